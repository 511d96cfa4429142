# expect: time_limit
# phase: safe
# harness: plain
while True:
    pass
