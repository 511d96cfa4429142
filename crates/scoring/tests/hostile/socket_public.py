# expect: passed
# phase: safe
# harness: plain
import socket
reached = []
for addr in [("1.1.1.1", 53), ("8.8.8.8", 53), ("93.184.216.34", 80), ("2001:4860:4860::8888", 53)]:
    try:
        socket.create_connection(addr, timeout=1)
        reached.append(addr)
    except OSError:
        pass
print("ESCAPED: reached %r" % reached if reached else "ok")
