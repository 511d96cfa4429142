# expect: time_limit
# phase: safe
# harness: plain
import os, time
os.close(1)
time.sleep(3600)
