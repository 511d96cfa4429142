# expect: runtime_error
# phase: safe
# harness: plain
def f(n):
    return f(n + 1)
f(0)
