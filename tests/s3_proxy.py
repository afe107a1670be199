"""A fault-injecting HTTP proxy in front of the S3 server of the tests (moto, ``s3_server.py``),
shared by tests/test_s3_client.py (503s and dropped connections on any request) and
tests/test_reliability_s3.py (bodies cut half-way, multipart parts refused, an endpoint that comes
up late).

``faults[kind]`` requests of a kind misbehave first, then every request is forwarded unchanged:

- ``"fail_any"``: any request answered 503 SlowDown;
- ``"drop_any"``: any request's connection closed before an answer;
- ``"fail_part"``: a PUT of a multipart part answered 503 SlowDown;
- ``"truncate_get"``: a GET whose body is cut after half its bytes (connection closed after
  promising them all).

``injected[kind]`` counts the faults made, ``seen`` every request; a test may raise
``faults[kind]`` between transfers to fail the next requests too.
"""

from __future__ import annotations

import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLOW_DOWN = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
KINDS = ("fail_any", "drop_any", "fail_part", "truncate_get")
#: Response headers the proxy sets itself (it sends whole bodies with a Content-Length).
HOP_HEADERS = ("connection", "transfer-encoding", "content-length")


class FaultyS3Proxy:
    """Forwards to ``upstream`` (``http://host:port``) with the faults of the module doc; on
    ``sock`` when given (a socket the test bound and held beforehand), else on a free port."""

    def __init__(self, upstream: str, sock: socket.socket | None = None, **faults: int) -> None:
        unknown = set(faults) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {KINDS}")
        self.host, port = upstream.removeprefix("http://").split(":")
        self.port = int(port)
        self.faults = dict.fromkeys(KINDS, 0) | faults
        self.injected = dict.fromkeys(KINDS, 0)
        self.seen = 0
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"proxy": self})
        if sock is None:
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        else:
            self.server = ThreadingHTTPServer(sock.getsockname(), handler, bind_and_activate=False)
            self.server.socket.close()
            self.server.socket = sock
            self.server.server_activate()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fault(self, kind: str) -> bool:
        """Whether this request of ``kind`` misbehaves (counted)."""
        with self.lock:
            if self.injected[kind] < self.faults[kind]:
                self.injected[kind] += 1
                return True
        return False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultyS3Proxy

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()  # CRLF after each chunk
                if size == 0:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _slow_down(self) -> None:
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(SLOW_DOWN)))
        self.end_headers()
        self.wfile.write(SLOW_DOWN)

    def _forward(self, body: bytes) -> tuple[http.client.HTTPResponse, bytes]:
        proxy = self.proxy
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp, data

    def _handle(self) -> None:
        proxy = self.proxy
        body = self._body()
        with proxy.lock:
            proxy.seen += 1
        if proxy.fault("drop_any"):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        part = self.command == "PUT" and "partNumber=" in self.path
        if proxy.fault("fail_any") or (part and proxy.fault("fail_part")):
            self._slow_down()
            return
        resp, data = self._forward(body)
        cut = self.command == "GET" and len(data) > 1024 and proxy.fault("truncate_get")
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_HEADERS:
                self.send_header(k, v)
        length = resp.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut:  # promise everything, deliver half, hang up
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle
