#!/usr/bin/env python3
"""The client of bench/sliced.sh: one sliced upload, timed; or a sink.

    sliced_client.py upload URL FILE [options]
    sliced_client.py sink PORT

upload: initiate (POST URL?uploads with {"size": N, "part_size": P}), the
parts (PUT URL?uploadId=ID&partNumber=n) over --connections (4) keep-alive
HTTP/1.1 connections, then complete (POST URL?uploadId=ID with the parts'
etags).  The file is mapped once (MAP_POPULATE: from the page cache, before
the clock starts) and each part is sent straight from the mapping, with no
copy in Python: a part is one sendall() of a memoryview, so the client costs
little more CPU than curl -T.  The connections take the parts from one
shared queue, in ascending order (--order asc) or descending (--order desc).

It prints one line of JSON: the times (s) of initiate (t_initiate), of the
parts (t_parts), of complete (t_complete: from sending the complete to its
answer) and in all (t_total), the
complete's answer, and the CPU (user + system, s) the client used.  With
--sha256 it checks the answer's sha256 and size, and exits 1 when they are
not the file's; it exits 2 on an HTTP error.

--before-complete CMD runs CMD (sh -c) once the parts are in and before
complete is sent, outside the timed parts; bench/sliced.sh attaches strace
to nginx's worker there.

sink: a minimal HTTP/1.1 server on 127.0.0.1:PORT that reads and drops
every body and answers 200 with a fake part or complete answer; bench/
sliced.sh sends the same parts to it to measure what the client (and the
loopback) can do on their own.  Only Python's standard library is used.
"""

import argparse
import json
import mmap
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse
from http.client import HTTPConnection


def fail(code, msg):
    print("sliced_client: " + msg, file=sys.stderr)
    sys.exit(code)


def request(conn, method, target, body=None, headers=None):
    conn.request(method, target, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data


def upload(args):
    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname, url.port or 80
    path = url.path

    size = os.stat(args.file).st_size
    part_size = args.part_size
    nparts = (size + part_size - 1) // part_size
    if nparts == 0:
        fail(1, "empty file")

    fd = os.open(args.file, os.O_RDONLY)
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    data = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ)
    os.close(fd)
    view = memoryview(data)

    order = list(range(1, nparts + 1))
    if args.order == "desc":
        order.reverse()

    conns = [HTTPConnection(host, port, timeout=args.timeout)
             for _ in range(args.connections)]
    for c in conns:
        c.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    cpu0 = os.times()
    t0 = time.monotonic()

    # initiate
    body = json.dumps({"size": size, "part_size": part_size})
    status, answer = request(conns[0], "POST", path + "?uploads", body,
                             {"Content-Type": "application/json"})
    if status != 200:
        fail(2, "initiate: HTTP %d: %s" % (status, answer[:300]))
    upload_id = json.loads(answer)["upload_id"]
    t1 = time.monotonic()

    # the parts, from one queue
    etags = {}
    errors = []
    lock = threading.Lock()
    queue = iter(order)

    def sender(conn):
        while True:
            with lock:
                if errors:
                    return
                n = next(queue, None)
            if n is None:
                return
            off = (n - 1) * part_size
            chunk = view[off:min(off + part_size, size)]
            try:
                st, ans = request(
                    conn, "PUT",
                    "%s?uploadId=%s&partNumber=%d" % (path, upload_id, n),
                    chunk,
                    {"Content-Length": str(len(chunk)),
                     "Content-Type": "application/octet-stream"})
            except Exception as e:  # noqa: BLE001 - reported, then exit 2
                st, ans = 0, repr(e).encode()
            with lock:
                if st != 200:
                    errors.append("part %d: HTTP %d: %s" % (n, st, ans[:300]))
                    return
                etags[n] = json.loads(ans)["etag"]

    threads = [threading.Thread(target=sender, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        fail(2, errors[0])
    t2 = time.monotonic()

    if args.before_complete:
        subprocess.run(["sh", "-c", args.before_complete], check=True)
    t2b = time.monotonic()

    # complete: the parts in ascending order, whatever order they were sent
    body = json.dumps({"parts": [{"part_number": n, "etag": etags[n]}
                                 for n in range(1, nparts + 1)]})
    t3 = time.monotonic()
    status, answer = request(conns[0], "POST",
                             "%s?uploadId=%s" % (path, upload_id), body,
                             {"Content-Type": "application/json"})
    t4 = time.monotonic()
    cpu1 = os.times()
    if status != 200:
        fail(2, "complete: HTTP %d: %s" % (status, answer[:300]))

    result = json.loads(answer)
    out = {
        "t_initiate": t1 - t0,
        "t_parts": t2 - t1,
        "t_complete": t4 - t3,
        # the hook's time (strace's attaching) is not the upload's
        "t_total": (t4 - t0) - (t2b - t2),
        "client_cpu": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "upload_id": upload_id,
        "answer": result,
    }
    print(json.dumps(out))

    for c in conns:
        c.close()
    view.release()
    data.close()

    if args.sha256 and not args.sink:
        if result.get("sha256") != args.sha256 or result.get("size") != size:
            fail(1, "complete answered sha256 %s, size %s; the file has %s, %d"
                 % (result.get("sha256"), result.get("size"), args.sha256,
                    size))


class SinkHandler(socketserver.BaseRequestHandler):
    """Reads requests (Content-Length bodies only) and drops the bodies."""

    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(1 << 20)
        mv = memoryview(buf)
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                n = sock.recv_into(mv)
                if n == 0:
                    return
                pending += mv[:n]
            head, _, pending = pending.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            target = lines[0].split(b" ")[1].decode()
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            left = length - len(pending)
            pending = pending[length:] if left < 0 else b""
            while left > 0:
                n = sock.recv_into(mv, min(left, len(buf)))
                if n == 0:
                    return
                left -= n
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query,
                                          keep_blank_values=True)
            if "uploads" in query:
                body = {"upload_id": "sink"}
            elif "partNumber" in query:
                body = {"etag": "0" * 32}
            else:
                body = {"sha256": "", "size": 0}
            body = json.dumps(body).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json"
                         b"\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))


class SinkServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def sink(args):
    server = SinkServer(("127.0.0.1", args.port), SinkHandler)
    server.serve_forever()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)

    u = sub.add_parser("upload")
    u.add_argument("url", help="http://HOST:PORT/location/key")
    u.add_argument("file")
    u.add_argument("--part-size", type=int, default=8 * 1024 * 1024)
    u.add_argument("--connections", type=int, default=4)
    u.add_argument("--order", choices=("asc", "desc"), default="asc")
    u.add_argument("--sha256", help="the file's, to check the answer")
    u.add_argument("--sink", action="store_true",
                   help="the server is a sink: check nothing")
    u.add_argument("--timeout", type=float, default=600)
    u.add_argument("--before-complete", metavar="CMD")

    s = sub.add_parser("sink")
    s.add_argument("port", type=int)

    args = p.parse_args()
    if args.mode == "upload":
        upload(args)
    else:
        sink(args)


if __name__ == "__main__":
    main()
