# expect: memory_limit
# phase: dangerous
# harness: plain
# Each child stays under the per-process address-space limit; together they pass the program's
# memory bound.
import os, time
for _ in range(6):
    if os.fork() == 0:
        data = b"x" * (200 << 20)
        time.sleep(30)
        os._exit(0)
time.sleep(30)
print("ESCAPED: six children of 200 MB each were allowed", flush=True)
