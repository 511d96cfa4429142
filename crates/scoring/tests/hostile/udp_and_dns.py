# expect: passed
# phase: safe
# harness: plain
import socket
socket.setdefaulttimeout(1)
leaks = []
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53))
    leaks.append("udp")
except OSError:
    pass
try:
    socket.getaddrinfo("example.com", 80)
    leaks.append("dns")
except OSError:
    pass
print("ESCAPED: %r" % leaks if leaks else "ok")
