# expect: passed
# phase: safe
# harness: plain
import os
leaks = [k for k in os.environ if "SECRET" in k]
if b"REPROLM_TEST_SECRET" in open("/proc/self/environ", "rb").read():
    leaks.append("/proc/self/environ")
for pid in ("1",):
    try:
        if b"REPROLM_TEST_SECRET" in open("/proc/%s/environ" % pid, "rb").read():
            leaks.append("/proc/%s/environ" % pid)
    except OSError:
        pass
print("ESCAPED: %r" % leaks if leaks else "ok")
