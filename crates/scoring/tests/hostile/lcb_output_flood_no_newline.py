# expect: output_limit
# phase: safe
# harness: lcb
# The harness captures sys.stdout: a flood without newlines must be stopped by the output bound,
# not grow the interpreter until the address-space limit.
import sys
while True:
    sys.stdout.write("x" * 4096)
