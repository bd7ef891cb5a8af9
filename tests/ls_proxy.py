"""A fault-injecting HTTP proxy on loopback, in front of the real Label Studio of the tests.

It forwards every request to the server and records it (method, path with query, answer, start and end times,
how many writes were in flight at once). ``fault(method, path, n)`` may answer instead of the server: ``n``
counts the requests with this method and path so far (1 for the first), so "fail the first attempt" is
``n == 1``. ``django_error_page()`` is the page Django itself renders for an unhandled exception (its debug
page), made by the Django of Label Studio's venv, not written by hand.

    with FaultProxy(server.url, fault=lambda m, p, n: (503, "text/plain", b"down") if m == "DELETE" else None) as px:
        LabelStudioTarget(px.url, token, project)...
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import ls_server

Answer = tuple[int, str, bytes]          # status, content type, body
Fault = Callable[[str, str, int], Answer | None]

_DJANGO_PAGE = r"""
import sys
from django.conf import settings
settings.configure(DEBUG=True, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, SECRET_KEY="x")
urlpatterns = []
import django
django.setup()
from django.db.utils import OperationalError
from django.test import RequestFactory
from django.views.debug import technical_500_response
try:
    raise OperationalError("database is locked")
except OperationalError:
    exc = sys.exc_info()
r = technical_500_response(RequestFactory().get(sys.argv[1], HTTP_ACCEPT=sys.argv[2]), *exc)
sys.stdout.buffer.write(r.content)
"""


@functools.cache
def django_error_page(path: str = "/api/predictions/7", accept: str = "text/html") -> bytes:
    """Django's debug page for ``OperationalError: database is locked`` raised at ``path`` (HTML, or its text
    form when ``accept`` is not HTML), rendered by Label Studio's own Django."""
    out = subprocess.run([str(ls_server.VENV / "bin" / "python"), "-c", _DJANGO_PAGE, path, accept],
                         capture_output=True, check=True, timeout=60)
    return out.stdout


@dataclass
class Seen:
    method: str
    path: str
    status: int
    start: float
    end: float
    injected: bool


@dataclass
class FaultProxy:
    upstream: str
    fault: Fault | None = None
    seen: list[Seen] = field(default_factory=list)
    max_writes_in_flight: int = 0
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._writes = 0
        self._client = httpx.Client(base_url=self.upstream, timeout=120)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        path = h.path
        bare = path.split("?", 1)[0]
        write = h.command != "GET"
        with self._lock:
            key = (h.command, bare)
            self._counts[key] = n = self._counts.get(key, 0) + 1
            if write:
                self._writes += 1
                self.max_writes_in_flight = max(self.max_writes_in_flight, self._writes)
        start = time.monotonic()
        try:
            answer = self.fault(h.command, path, n) if self.fault else None
            if answer is None:
                headers = {k: v for k, v in h.headers.items() if k.lower() in ("authorization", "content-type",
                                                                                "accept")}
                r = self._client.request(h.command, path, content=body, headers=headers)
                answer = (r.status_code, r.headers.get("content-type", ""), r.content)
                injected = False
            else:
                injected = True
        finally:
            with self._lock:
                if write:
                    self._writes -= 1
        status, ctype, content = answer
        with self._lock:
            self.seen.append(Seen(h.command, path, status, start, time.monotonic(), injected))
        h.send_response(status)
        if ctype:
            h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(content)))
        h.end_headers()
        h.wfile.write(content)

    def requests(self, method: str, prefix: str = "") -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.startswith(prefix)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
