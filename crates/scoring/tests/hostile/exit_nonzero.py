# expect: runtime_error
# phase: safe
# harness: plain
import sys
print("ok")
sys.exit(3)
