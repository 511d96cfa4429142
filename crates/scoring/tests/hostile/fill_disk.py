# expect: runtime_error
# phase: safe
# harness: plain
with open("big", "wb") as f:
    for _ in range(100):
        f.write(b"x" * (1 << 20))
print("ok")
