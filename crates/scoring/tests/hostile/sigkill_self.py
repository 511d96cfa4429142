# expect: runtime_error
# phase: safe
# harness: plain
import os, signal
print("ok", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
