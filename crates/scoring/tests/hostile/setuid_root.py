# expect: passed
# phase: safe
# harness: plain
import os
try:
    os.setuid(0)
    print("ESCAPED: setuid(0) worked")
except PermissionError:
    print("ok")
