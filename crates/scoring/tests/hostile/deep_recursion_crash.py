# expect: runtime_error
# phase: safe
# harness: plain
# C-level recursion (repr of deeply nested lists) with the recursion limit lifted overflows the
# C stack: a segfault, reported as a runtime error. A small stack keeps it fast.
import resource, sys
resource.setrlimit(resource.RLIMIT_STACK, (1 << 20, 1 << 20))
sys.setrecursionlimit(10 ** 8)
x = []
for _ in range(10 ** 5):
    x = [x]
print(len(str(x)))
