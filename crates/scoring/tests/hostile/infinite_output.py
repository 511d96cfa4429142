# expect: output_limit
# phase: safe
# harness: plain
while True:
    print("x" * 1000)
