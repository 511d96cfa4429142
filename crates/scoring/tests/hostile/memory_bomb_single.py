# expect: memory_limit
# phase: dangerous
# harness: plain
x = bytearray(1 << 40)
