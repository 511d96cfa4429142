# expect: time_limit
# phase: dangerous
# harness: plain
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
