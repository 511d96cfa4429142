# expect: memory_limit
# phase: dangerous
# harness: plain
chunks = []
while True:
    chunks.append(bytearray(16 << 20))
