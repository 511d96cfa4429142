# expect: passed
# phase: safe
# harness: plain
import socket
try:
    socket.create_connection(("127.0.0.1", @PORT@), timeout=1)
    print("ESCAPED: connected to the host's 127.0.0.1")
except OSError:
    print("ok")
