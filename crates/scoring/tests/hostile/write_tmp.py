# expect: passed
# phase: safe
# harness: plain
# Succeeds, but in a private /tmp: the host check verifies nothing appeared in the real /tmp.
open("/tmp/@MARKER@-escape", "w").write("pwned")
open("/dev/shm/@MARKER@-escape", "w").write("pwned")
print("ok")
