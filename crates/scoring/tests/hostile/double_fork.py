# expect: passed
# phase: safe
# harness: plain
import os
pid = os.fork()
if pid == 0:
    if os.fork() == 0:
        os.setsid()
        os.execv("/bin/sleep", ["@MARKER@-double", "300"])
    os._exit(0)
os.waitpid(pid, 0)
print("ok")
