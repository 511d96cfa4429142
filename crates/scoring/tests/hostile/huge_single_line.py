# expect: output_limit
# phase: safe
# harness: plain
import sys
sys.stdout.write("x" * (64 << 20))
