# expect: time_limit
# phase: safe
# harness: plain
import os, time
if os.fork() == 0:
    os.setsid()
    os.execv("/bin/sleep", ["@MARKER@-late", "300"])
time.sleep(3600)
