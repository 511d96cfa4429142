# expect: passed
# phase: safe
# harness: plain
import os
escaped = []
for d in ["/", "/usr", "/etc", "/input", "/bin", "/lib", "/root", "/proc/sys/kernel"]:
    try:
        with open(os.path.join(d, "@MARKER@-x"), "w") as f:
            f.write("x")
        escaped.append(d)
    except OSError:
        pass
try:
    os.mkdir("/usr/@MARKER@-dir")
    escaped.append("mkdir /usr")
except OSError:
    pass
print("ESCAPED: %r" % escaped if escaped else "ok")
