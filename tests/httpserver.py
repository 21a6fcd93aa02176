"""A misbehaving-on-demand static file server on 127.0.0.1 for download tests.

`FileServer(root)` serves files under `root` from a `ThreadingHTTPServer` on a daemon thread.
Paths under `/redirect/` answer 302 to the same path without that prefix. Switches on `server.faults` make it ignore Range, truncate bodies, drop a connection mid-body,
answer 500 a number of times, serve corrupt bytes or stream slowly. Every request is logged in
`server.requests` as `(method, path, range_header, status)`.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Faults:
    support_range: bool = True  # False: ignore Range and answer 200 with the whole file
    truncate_to: int | None = None  # send at most this many body bytes, then close
    honest_length: bool = False  # with truncate_to: also announce the truncated Content-Length
    drop_once_after: int | None = None  # the next GET sends this many bytes then drops (once)
    fail_500_times: int = 0  # answer 500 to this many GETs first
    corrupt: bool = False  # flip the first byte of every body
    chunk_delay: float = 0.0  # seconds to sleep between 64 KiB chunks


class FileServer:
    """Context manager: `with FileServer(tmpdir) as srv: srv.url("a.bin")`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.faults = Faults()
        self.requests: list[tuple[str, str, str | None, int]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, rel: str) -> str:
        return f"{self.base_url}/{rel.lstrip('/')}"

    def gets(self, path_suffix: str = "") -> list[tuple[str, str, str | None, int]]:
        """Logged GET requests whose path ends with `path_suffix`."""
        with self._lock:
            return [r for r in self.requests if r[0] == "GET" and r[1].endswith(path_suffix)]

    def log(self, method: str, path: str, range_header: str | None, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, range_header, status))

    def take_500(self) -> bool:
        """Consume one of the pending 500 answers; True when this request must fail."""
        with self._lock:
            if self.faults.fail_500_times > 0:
                self.faults.fail_500_times -= 1
                return True
            return False

    def take_drop(self) -> int | None:
        """Consume the one-shot connection drop; the byte count to send, or None."""
        with self._lock:
            value, self.faults.drop_once_after = self.faults.drop_once_after, None
            return value

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def _parse_range(header: str | None) -> int | None:
    """Start offset of a `bytes=N-` header, or None when absent/unsupported."""
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return None
    try:
        return int(header[6:-1])
    except ValueError:
        return None


def _make_handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (silence stderr)
            return

        def do_GET(self) -> None:  # noqa: N802
            path = unquote(urlsplit(self.path).path)
            range_header = self.headers.get("Range")
            if path.startswith("/redirect/"):  # like the Hub's resolve URLs: 302 to the real file
                server.log("GET", path, range_header, 302)
                self.send_response(302)
                self.send_header("Location", path[len("/redirect") :])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            target = (server.root / path.lstrip("/")).resolve()
            if server.root.resolve() not in target.parents or not target.is_file():
                return self._status(404, path, range_header)
            if server.take_500():
                return self._status(500, path, range_header)
            data = target.read_bytes()
            if server.faults.corrupt and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            faults = server.faults
            start = _parse_range(range_header) if faults.support_range else None
            if start is not None and start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                server.log("GET", path, range_header, 416)
                self.end_headers()
                return
            body = data[start:] if start is not None else data
            send = body
            if faults.truncate_to is not None:
                send = body[: faults.truncate_to]
            drop = server.take_drop()
            if drop is not None:
                send = send[:drop]
            announced = len(send) if (faults.truncate_to is not None and faults.honest_length) else len(body)
            status = 206 if start is not None else 200
            self.send_response(status)
            if start is not None:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(announced))
            self.send_header("Accept-Ranges", "bytes" if faults.support_range else "none")
            server.log("GET", path, range_header, status)
            self.end_headers()
            try:
                for i in range(0, len(send), 65536):
                    self.wfile.write(send[i : i + 65536])
                    self.wfile.flush()
                    if faults.chunk_delay:
                        time.sleep(faults.chunk_delay)
            except (BrokenPipeError, ConnectionResetError):
                pass
            if len(send) < announced:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def _status(self, code: int, path: str, range_header: str | None) -> None:
            body = f"{code}\n".encode()
            server.log("GET", path, range_header, code)
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
