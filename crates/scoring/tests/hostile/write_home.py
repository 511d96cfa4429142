# expect: passed
# phase: safe
# harness: plain
import os
escaped = []
for path in ["/root/@MARKER@-escape", os.path.expanduser("~root") + "/@MARKER@-escape2"]:
    try:
        open(path, "w").write("pwned")
        escaped.append(path)
    except OSError:
        pass
# $HOME itself is the scratch directory: writing there is allowed and vanishes with the run.
open(os.path.join(os.environ["HOME"], "notes.txt"), "w").write("scratch")
print("ESCAPED: %r" % escaped if escaped else "ok")
