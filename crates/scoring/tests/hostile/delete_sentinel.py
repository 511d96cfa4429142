# expect: passed
# phase: safe
# harness: plain
import os, shutil
for f in [lambda: os.remove("/tmp/@MARKER@-sentinel"), lambda: shutil.rmtree("/tmp"), lambda: os.remove("/etc/hostname")]:
    try:
        f()
    except OSError:
        pass
print("ok")
