# expect: passed
# phase: safe
# harness: plain
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
escaped = []
if libc.mount(b"tmpfs", b"/usr", b"tmpfs", 0, None) == 0:
    escaped.append("mount")
if libc.ptrace(16, 1, 0, 0) == 0:  # PTRACE_ATTACH to init
    escaped.append("ptrace init")
if libc.chroot(b"/tmp") == 0:
    escaped.append("chroot")
# A user namespace may be allowed; even "root" in it must not make host paths writable.
libc.unshare(0x10000000)
try:
    open("/usr/@MARKER@-userns", "w").write("x")
    escaped.append("write /usr after unshare")
except OSError:
    pass
print("ESCAPED: %r" % escaped if escaped else "ok")
