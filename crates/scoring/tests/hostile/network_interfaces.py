# expect: passed
# phase: safe
# harness: plain
import socket
names = [n for _, n in socket.if_nameindex()]
print("ok" if names == ["lo"] else "ESCAPED: interfaces %r" % names)
