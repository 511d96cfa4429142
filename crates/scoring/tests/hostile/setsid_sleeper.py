# expect: passed
# phase: safe
# harness: plain
import os
if os.fork() == 0:
    os.setsid()
    os.execv("/bin/sleep", ["@MARKER@-setsid", "300"])
print("ok")
