# expect: time_limit
# phase: safe
# harness: lcb
# Deep recursion that swallows the harness's timeout at every level: only a limit enforced from
# outside the program ends it.
import sys
sys.setrecursionlimit(100000)
def descend(depth):
    while True:
        try:
            if depth < 5000:
                descend(depth + 1)
        except BaseException:
            pass
descend(0)
