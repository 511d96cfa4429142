# expect: time_limit
# phase: safe
# harness: plain
import time
time.sleep(3600)
