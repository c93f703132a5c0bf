"""A loopback HTTP proxy in front of a registry that injects faults and counts bytes.

Faults match ``"METHOD /path"`` by regex and fire ``times`` times (-1: always):

- ``status``: answer ``status`` (with ``headers``, e.g. Retry-After) instead of forwarding;
- ``cut``: forward, but close the connection after ``after`` body bytes;
- ``corrupt``: forward with the body byte at ``after`` flipped;
- ``redirect``: answer 307 to ``to`` + the path (another host serving the same registry).

``rate`` throttles every response body (bytes per second, per connection).
``blob_bytes`` counts the body bytes of blob GETs actually written to clients.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Fault:
    match: str
    kind: str = "status"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0
    times: int = 1
    to: str = ""
    hits: int = 0

    def fires(self, line: str) -> bool:
        if self.times != -1 and self.hits >= self.times:
            return False
        if not re.search(self.match, line):
            return False
        self.hits += 1
        return True


class FaultProxy:
    def __init__(self, upstream: str, rate: float | None = None) -> None:
        self.upstream = upstream
        self.rate = rate
        self.faults: list[Fault] = []
        self.blob_bytes = 0
        self.log: list[dict] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.addr = ""

    def add(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def _fault(self, line: str, kinds: tuple[str, ...]) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.kind in kinds and f.fires(line):
                    return f
        return None

    def requests(self, pattern: str = "") -> list[dict]:
        with self.lock:
            return [r for r in self.log if re.search(pattern, r["line"])]

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                line = f"{self.command} {self.path}"
                body = self._body()
                entry = {"line": line, "headers": dict(self.headers), "status": None}
                with proxy.lock:
                    proxy.log.append(entry)
                f = proxy._fault(line, ("status", "redirect"))
                if f is not None:
                    if f.kind == "redirect":
                        status, headers, payload = 307, {"Location": f.to + self.path}, b""
                    else:
                        status, headers = f.status, dict(f.headers)
                        payload = b'{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}'
                    entry["status"] = status
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                if body or self.command in ("PUT", "POST", "PATCH"):
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                entry["status"] = resp.status
                chunked = resp.getheader("Transfer-Encoding", "").lower() == "chunked"
                data = resp.read() if chunked else None
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP and not (data is not None and k.lower() == "content-length"):
                        self.send_header(k, v)
                if data is not None:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    conn.close()
                    return
                blob = self.command == "GET" and "/blobs/sha256:" in self.path
                cut = proxy._fault(line, ("cut",)) if blob else None
                bad = proxy._fault(line, ("corrupt",)) if blob else None
                sent = 0
                start = time.monotonic()
                try:
                    while True:
                        piece = data if data is not None else resp.read(16384)
                        data = b"" if data is not None else None
                        if not piece:
                            break
                        if bad is not None and sent <= bad.after < sent + len(piece):
                            i = bad.after - sent
                            piece = piece[:i] + bytes([piece[i] ^ 0xFF]) + piece[i + 1:]
                        if cut is not None and sent + len(piece) > cut.after:
                            piece = piece[: max(0, cut.after - sent)]
                            self.wfile.write(piece)
                            self._count(blob, len(piece))
                            self.wfile.flush()
                            self.connection.shutdown(socket.SHUT_RDWR)
                            self.close_connection = True
                            return
                        self.wfile.write(piece)
                        sent += len(piece)
                        self._count(blob, len(piece))
                        if proxy.rate:
                            ahead = sent / proxy.rate - (time.monotonic() - start)
                            if ahead > 0:
                                time.sleep(ahead)
                finally:
                    conn.close()

            def _count(self, blob: bool, n: int) -> None:
                if blob:
                    with proxy.lock:
                        proxy.blob_bytes += n

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
