"""A local HTTP file server for remote-input tests and benchmarks: Range requests, HEAD, ETag and
Last-Modified (what fsspec's HTTP filesystem needs), with injected faults.

Faults (:class:`Faults`, changeable while the server runs): a latency before every answer, a
per-connection bandwidth, and for chosen paths a number of ranged GETs answered 500, cut mid-body
(the connection dropped), or stalled mid-body (until the server stops). Misbehaving servers too: Range
ignored (200 and the whole file, as ``http.server`` does), an endless body, a Content-Encoding the
client did not ask for, an object replaced between two requests, redirects. Only the standard library:
the tests and ``python -m bench remote`` start it in a thread on 127.0.0.1, on a free port.
"""

from __future__ import annotations

import base64
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_PIECE = 64 * 1024


@dataclass
class Faults:
    """What goes wrong, and how slow it is. Counts are per path (``/a.log``) and count down."""

    latency_s: float = 0.0  # before every answer (HEAD and GET)
    bandwidth: float = 0.0  # bytes per second per answer; 0: as fast as it goes
    fail_500: dict[str, int] = field(default_factory=dict)  # ranged GETs answered 500
    drop: dict[str, int] = field(default_factory=dict)  # ranged GETs cut after half their body
    stall: dict[str, int] = field(default_factory=dict)  # ranged GETs that stop after half their body
    pass_first: int = 0  # ranged GETs of each path answered normally before any fault (mid-file faults)
    auth: tuple[str, str] | None = None  # Basic credentials required, when set
    ignore_range: bool = False  # GETs answered 200 with the whole file, whatever their Range
    endless: set[str] = field(default_factory=set)  # GETs of these paths: 200, the file, then zeros forever
    encoding: dict[str, str] = field(default_factory=dict)  # the file's bytes sent as this Content-Encoding
    replace: dict[str, bytes] = field(default_factory=dict)  # the file rewritten after its first ranged GET
    redirect: dict[str, str] = field(default_factory=dict)  # answered 302 to this Location
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Range)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ranged: dict[str, int] = field(default_factory=dict)  # ranged GETs of each path so far

    def count(self, path: str) -> bool:
        """Count a ranged GET of ``path``; whether faults may apply to it (``pass_first``)."""
        with self.lock:
            self._ranged[path] = self._ranged.get(path, 0) + 1
            return self._ranged[path] > self.pass_first

    def take(self, kind: dict[str, int], path: str) -> bool:
        """Whether this request of ``path`` gets the fault ``kind`` (and count it down)."""
        with self.lock:
            left = kind.get(path, 0)
            if left > 0:
                kind[path] = left - 1
                return True
            return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    root: Path
    faults: Faults
    stopping: threading.Event


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: aiohttp reuses its connections
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet: the tests read their own output

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        faults, stopping = self.server.faults, self.server.stopping
        rng = self.headers.get("Range", "")
        path = unquote(urlsplit(self.path).path)
        with faults.lock:
            faults.requests.append((self.command, path, rng))
        if faults.latency_s and stopping.wait(faults.latency_s):
            return
        if faults.auth is not None and not self._authorized(faults.auth):
            self._empty(401, {"WWW-Authenticate": 'Basic realm="logs"'})
            return
        if path in faults.redirect:
            self._empty(302, {"Location": faults.redirect[path]})
            return
        file = (self.server.root / path.lstrip("/")).resolve()
        if not file.is_relative_to(self.server.root) or not file.is_file():
            self._empty(404)
            return
        st = file.stat()
        size = st.st_size
        start, end = 0, size  # end exclusive
        status = 200
        faulty = False
        if not head and path in faults.endless:
            self._endless(file.read_bytes())
            return
        if rng and faults.ignore_range:
            faulty = not head and faults.count(path)
        elif rng:
            m = _RANGE.fullmatch(rng.strip())
            if m is None or (not m.group(1) and not m.group(2)):
                self._empty(416, {"Content-Range": f"bytes */{size}"})
                return
            if m.group(1):
                start = int(m.group(1))
                end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            else:
                start = max(0, size - int(m.group(2)))
            if start >= size or end <= start:
                self._empty(416, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
            faulty = not head and faults.count(path)
            if faulty and faults.take(faults.fail_500, path):
                self._empty(500)
                return
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{size:x}-{st.st_mtime_ns:x}"')
        self.send_header("Last-Modified", formatdate(st.st_mtime, usegmt=True))
        self.send_header("Content-Type", "application/octet-stream")
        if path in faults.encoding:
            self.send_header("Content-Encoding", faults.encoding[path])
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if head:
            return
        faulty = bool(rng) and faulty
        cut = faulty and faults.take(faults.drop, path)
        stall = faulty and not cut and faults.take(faults.stall, path)
        with file.open("rb") as fh:
            fh.seek(start)
            body = fh.read(end - start)
        if rng:
            with faults.lock:
                new = faults.replace.pop(path, None)
            if new is not None:
                file.write_bytes(new)  # the next request sees another object (ETag and maybe size)
        if cut or stall:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if stall:
                stopping.wait()  # a server that stops answering mid-body, until the test ends
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-body
            return
        self._send(body, faults.bandwidth)

    def _send(self, body: bytes, bandwidth: float) -> None:
        t0 = time.perf_counter()
        for k in range(0, len(body), _PIECE):
            try:
                self.wfile.write(body[k : k + _PIECE])
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return  # the client had what it wanted (a reader of a whole body stops at its size)
            if bandwidth:
                ahead = (k + _PIECE) / bandwidth - (time.perf_counter() - t0)
                if ahead > 0 and self.server.stopping.wait(ahead):
                    return

    def _endless(self, head: bytes) -> None:
        """200, no length, ``head`` then zeros until the client goes away or the server stops."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        zeros = b"\0" * _PIECE
        try:
            self.wfile.write(head)
            while not self.server.stopping.is_set():
                self.wfile.write(zeros)
        except OSError:
            return  # the client stopped reading: what a bounded reader does

    def _authorized(self, auth: tuple[str, str]) -> bool:
        want = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        return self.headers.get("Authorization", "") == want

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def serve_plain(root: Path) -> Iterator[str]:
    """Serve ``root`` with the standard library's own ``http.server`` (Range ignored, HTTP/1.0), as
    ``python -m http.server`` does; yields the base URL."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def serve(root: Path, faults: Faults | None = None, port: int = 0) -> Iterator[tuple[str, Faults]]:
    """Serve ``root`` on 127.0.0.1 (``port``; 0: a free one) in a thread; yields the base URL and the
    faults."""
    server = _Server(("127.0.0.1", port), _Handler)
    server.root = root.resolve()
    server.faults = faults or Faults()
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.faults
    finally:
        server.stopping.set()  # releases stalled and sleeping answers
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: list[str]) -> int:
    """``python -m bench serve DIR [--latency-ms N] [--bandwidth-mb N] [--port P]``: serve a directory's
    files over HTTP on 127.0.0.1 until interrupted, slow on purpose, for logpipe to read
    (docs/diagnostics.md: "A slow source, with 1 and then 8 read threads")."""
    import argparse
    import signal

    ap = argparse.ArgumentParser(prog="python -m bench serve", description=main.__doc__)
    ap.add_argument("root", type=Path, help="the directory whose files are served")
    ap.add_argument("--latency-ms", type=float, default=50.0, help="wait before every answer")
    ap.add_argument("--bandwidth-mb", type=float, default=0.0, help="MB/s per answer (0: no limit)")
    ap.add_argument("--port", type=int, default=8765)
    a = ap.parse_args(argv)
    faults = Faults(latency_s=a.latency_ms / 1000, bandwidth=a.bandwidth_mb * 1e6)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with serve(a.root, faults, a.port) as (base, _):
        names = sorted(f.name for f in a.root.iterdir() if f.is_file() and not f.name.startswith("."))
        sys.stdout.write(f"serving {a.root} at {base}/ ({a.latency_ms:g} ms before every answer): ")
        sys.stdout.write(" ".join(f"{base}/{n}" for n in names) + "\n")
        sys.stdout.flush()
        stop.wait()
    return 0
