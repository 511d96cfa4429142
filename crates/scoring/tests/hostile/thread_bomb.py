# expect: passed
# phase: dangerous
# harness: plain
import threading, time
n = 0
try:
    while True:
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        n += 1
except RuntimeError:
    pass
print("ok" if n < 1000 else "ESCAPED: %d threads" % n, flush=True)
import os
os._exit(0)
