# expect: runtime_error
# phase: safe
# harness: lcb
import os
os.fork()
print("ok")
