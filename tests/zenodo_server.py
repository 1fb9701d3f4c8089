"""A loopback stand-in for the Zenodo API, for tests (zenodo.org is never contacted).

    from zenodo_server import ZenodoStandIn

    with ZenodoStandIn({"123": {"a.txt": b"hello"}}) as server:
        fetch_record("123", tmp_path, api_base=server.api)

It serves ``GET /api/records/<id>`` in Zenodo's JSON shape (``files`` entries with ``key``,
``size``, ``checksum: "md5:<hex>"`` and ``links.self``) and the files themselves at
``/api/records/<id>/files/<name>/content``, honouring ``Range: bytes=N-`` with 206 answers.
Faults can be switched on: drop the connection after K bytes, ignore Range, advertise a wrong md5,
answer 503 a few times. Every request is recorded in ``server.requests``.

The server listens on 127.0.0.1 on an ephemeral port in a daemon thread, times out idle
connections after a few seconds, answers at most ``max_requests`` requests (then 503) and shuts
itself down after ``lifetime`` seconds if the test forgets to.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    """One request the stand-in received."""

    method: str
    path: str
    range: str | None
    status: int = 0


@dataclass
class ZenodoStandIn:
    """Serve ``records`` ({record_id: {file name: bytes}}) like the Zenodo API does.

    Parameters
    ----------
    records : dict
        ``{record_id: {file name: content}}``.
    drop_after : dict, optional
        ``{file name: K}``: the first request for that file sends the headers of the full answer
        and K bytes, then closes the socket.
    ignore_range : bool
        Answer every file request with 200 and the whole file, as servers without Range do.
    wrong_md5 : set, optional
        File names whose advertised checksum is wrong (the md5 of other bytes).
    fail_first : int
        Answer the first N requests (of any kind) with 503.
    max_requests : int
        Requests answered normally; later ones get 503.
    lifetime : float
        Seconds after which the server stops by itself.
    """

    records: dict[str, dict[str, bytes]]
    drop_after: dict[str, int] = field(default_factory=dict)
    ignore_range: bool = False
    wrong_md5: set[str] = field(default_factory=set)
    fail_first: int = 0
    max_requests: int = 200
    lifetime: float = 60.0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._dropped: set[str] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._url = ""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ZenodoStandIn:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            self._timer.cancel()
            httpd.shutdown()
            httpd.server_close()

    def __enter__(self) -> ZenodoStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- addresses and bookkeeping ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self._url  # kept after stop(), for messages that name it

    @property
    def api(self) -> str:
        """The API base URL to hand to holly (``api_base`` / ``--api`` / ``HOLLY_ZENODO_API``)."""
        return self.url + "/api"

    def file_url(self, record_id: str, name: str) -> str:
        # "/" is quoted too: keys of Zenodo's GitHub integration hold one (owner/repo-tag.zip)
        return f"{self.api}/records/{record_id}/files/{urllib.parse.quote(name, safe='')}/content"

    def record_json(self, record_id: str) -> dict:
        """The JSON served for ``record_id``."""
        files = []
        for i, (name, content) in enumerate(self.records[record_id].items()):
            md5 = hashlib.md5(content, usedforsecurity=False).hexdigest()
            if name in self.wrong_md5:
                md5 = hashlib.md5(content + b"!", usedforsecurity=False).hexdigest()
            files.append(
                {
                    "id": f"{record_id}-{i}",
                    "key": name,
                    "size": len(content),
                    "checksum": f"md5:{md5}",
                    "links": {"self": self.file_url(record_id, name)},
                }
            )
        doi = f"10.5281/zenodo.{record_id}"
        return {
            "id": int(record_id) if record_id.isdigit() else record_id,
            "doi": doi,
            "metadata": {"title": f"Stand-in record {record_id}", "doi": doi},
            "files": files,
        }

    def file_requests(self, name: str) -> list[Request]:
        """Requests for the content of file ``name``."""
        quoted = urllib.parse.quote(name, safe="")
        return [r for r in self.requests if r.path.endswith(f"/files/{quoted}/content")]


_RECORD = re.compile(r"^/api/records/([^/]+)$")
_FILE = re.compile(r"^/api/records/([^/]+)/files/([^/]+)/content$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    standin: ZenodoStandIn
    timeout = 5  # seconds a connection may sit idle

    def log_message(self, format, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        s = self.standin
        path = urllib.parse.urlsplit(self.path).path
        req = Request("GET", path, self.headers.get("Range"))
        with s._lock:
            s.requests.append(req)
            n = len(s.requests)
        if n <= s.fail_first or n > s.max_requests:
            return self._send(req, 503, b'{"status": 503}', "application/json")
        if m := _RECORD.match(path):
            if m.group(1) not in s.records:
                body = json.dumps(
                    {"status": 404, "message": "The persistent identifier does not exist."}
                )
                return self._send(req, 404, body.encode(), "application/json")
            body = json.dumps(s.record_json(m.group(1))).encode()
            return self._send(req, 200, body, "application/json")
        if m := _FILE.match(path):
            record_id, name = m.group(1), urllib.parse.unquote(m.group(2))
            content = s.records.get(record_id, {}).get(name)
            if content is None:
                return self._send(req, 404, b'{"status": 404}', "application/json")
            return self._send_file(req, name, content)
        return self._send(req, 404, b'{"status": 404}', "application/json")

    def _send(self, req: Request, status: int, body: bytes, ctype: str, headers=()) -> None:
        req.status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_file(self, req: Request, name: str, content: bytes) -> None:
        s = self.standin
        size = len(content)
        status, start, headers = 200, 0, [("Accept-Ranges", "none" if s.ignore_range else "bytes")]
        m = _RANGE.match(req.range or "")
        if m and not s.ignore_range:
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else size - 1
            if start >= size:
                headers.append(("Content-Range", f"bytes */{size}"))
                return self._send(req, 416, b"", "application/octet-stream", headers)
            content = content[start : end + 1]
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{start + len(content) - 1}/{size}"))
        with s._lock:
            drop = name in s.drop_after and name not in s._dropped
            s._dropped.add(name)
        if not drop:
            return self._send(req, status, content, "application/octet-stream", headers)
        # Promise the whole answer, send K bytes, then hang up.
        req.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(content)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(content[: s.drop_after[name]])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
