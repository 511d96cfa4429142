# expect: passed
# phase: safe
# harness: plain
import os, signal, time
for sig in (signal.SIGKILL, signal.SIGTERM):
    try:
        os.kill(os.getppid(), sig)
    except OSError:
        pass
time.sleep(0.2)
print("ok")
