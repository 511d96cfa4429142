# expect: runtime_error
# phase: dangerous
# harness: plain
# Children kill(-1) everything of their uid, the main program included (SIGKILL).
import os, signal
for _ in range(5):
    if os.fork() == 0:
        while True:
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
import time
time.sleep(3600)
