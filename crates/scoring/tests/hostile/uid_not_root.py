# expect: passed
# phase: safe
# harness: plain
import os
ids = (os.getuid(), os.geteuid(), os.getgid(), os.getegid())
print("ok" if 0 not in ids and os.getgroups() == [] else "ESCAPED: running as %r" % (ids,))
