# expect: passed
# phase: safe
# harness: plain
import os
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("ok" if os.getppid() == 1 and max(pids) < 100 else "ESCAPED: sees host pids %r" % pids[:20])
