# expect: passed
# phase: safe
# harness: plain
import os
try:
    for i in range(100000):
        with open("/tmp/f%d" % i, "w") as f:
            f.write("x" * 512)
except OSError:
    pass
print("ok")
