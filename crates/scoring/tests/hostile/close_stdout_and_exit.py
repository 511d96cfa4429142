# expect: wrong_answer
# phase: safe
# harness: plain
import os
os.close(1)
os.close(2)
