# expect: time_limit
# phase: safe
# harness: plain
import os, signal
os.kill(os.getpid(), signal.SIGSTOP)
print("ok")
