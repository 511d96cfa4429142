# expect: runtime_error
# phase: safe
# harness: lcb
import os
os.system("echo hi")
print("ok")
