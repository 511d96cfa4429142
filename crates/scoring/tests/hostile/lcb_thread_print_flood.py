# expect: output_limit
# phase: safe
# harness: lcb
# Threads printing into the captured stdout at once.
import threading
def spam():
    while True:
        print("y" * 100, end="")
for _ in range(4):
    threading.Thread(target=spam, daemon=True).start()
while True:
    print("z" * 100, end="")
