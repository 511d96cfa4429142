# expect: time_limit
# phase: safe
# harness: plain
import sys
while True:
    sys.stdin.read(1)
