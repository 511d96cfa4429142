# expect: output_limit
# phase: safe
# harness: plain
import sys
while True:
    sys.stderr.write("e" * 1000)
