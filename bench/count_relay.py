#!/usr/bin/env python3
"""A TCP relay on 127.0.0.1 that counts the bytes it passes from the server to its clients.

Usage: count_relay.py UPSTREAM_PORT PORT_FILE COUNT_FILE
Listens on a free port (written to PORT_FILE), relays every connection to 127.0.0.1:UPSTREAM_PORT,
and keeps the number of bytes sent from upstream to clients in COUNT_FILE (rewritten every 10 ms).
Used by delivery_bench.sh to see how much the hub sends again after the gateway is killed.
"""
import os
import socket
import sys
import threading
import time

upstream_port, port_file, count_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
total = 0


def pipe(src, dst, counted):
    global total
    try:
        while True:
            data = src.recv(1 << 20)
            if not data:
                break
            dst.sendall(data)
            if counted:
                with lock:
                    total += len(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def writer():
    last = -1
    while True:
        with lock:
            now = total
        if now != last:
            tmp = count_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(now))
            os.replace(tmp, count_file)
            last = now
        time.sleep(0.01)


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(64)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.getsockname()[1]))
os.replace(port_file + ".tmp", port_file)
threading.Thread(target=writer, daemon=True).start()
while True:
    client, _ = server.accept()
    try:
        up = socket.create_connection(("127.0.0.1", upstream_port))
    except OSError:
        client.close()
        continue
    threading.Thread(target=pipe, args=(up, client, True), daemon=True).start()
    threading.Thread(target=pipe, args=(client, up, False), daemon=True).start()
