# expect: passed
# phase: safe
# harness: lcb
open("/tmp/@MARKER@-lcb", "w").write("x")
print("ok")
