# expect: runtime_error
# phase: safe
# harness: plain
import ctypes
ctypes.string_at(0)
