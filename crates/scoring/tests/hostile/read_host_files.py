# expect: passed
# phase: safe
# harness: plain
import os
leaks = []
for path in ["/etc/shadow", "/tmp/@MARKER@-secret", "/root/.bash_history", "/root/.ssh/id_rsa", "/proc/1/mem"]:
    try:
        open(path, "rb").read(1)
        leaks.append(path)
    except OSError:
        pass
extra = [p for p in os.listdir("/root") if p != ".pyenv"]
if extra:
    leaks.append("/root has %r" % extra)
print("ESCAPED: %r" % leaks if leaks else "ok")
