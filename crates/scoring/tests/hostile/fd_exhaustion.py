# expect: passed
# phase: safe
# harness: plain
fds = []
try:
    while True:
        fds.append(open("/dev/null"))
except OSError:
    pass
print("ok" if len(fds) < 1000 else "ESCAPED: %d files open" % len(fds))
