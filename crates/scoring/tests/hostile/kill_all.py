# expect: passed
# phase: dangerous
# harness: plain
import os, signal, time
if os.fork() == 0:
    os.execv("/bin/sleep", ["@MARKER@-victim", "300"])
time.sleep(0.1)
os.kill(-1, signal.SIGKILL)
print("ok")
