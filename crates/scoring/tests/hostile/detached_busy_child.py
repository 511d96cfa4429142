# expect: passed
# phase: safe
# harness: plain
import os, sys
if os.fork() == 0:
    os.setsid()
    os.execv(sys.executable, ["@MARKER@-busy", "-c", "while True: pass"])
print("ok")
