"""A real S3 API on 127.0.0.1 for the tests: moto's server mode, with a log of every request it served.

``start()`` returns an :class:`S3Server` whose ``storage_options`` point fsspec/s3fs at it (endpoint, dummy
credentials, region). ``requests`` lists ``(method, path, range header, status, bytes sent)`` per request, so
the tests can check that image files were read with ranged GETs, never whole.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class Served:
    method: str
    path: str
    range: str | None
    status: int
    sent: int


class _Recorder:
    """WSGI middleware: records each request and counts the body bytes sent."""

    def __init__(self, app: Callable[..., Iterable[bytes]], log: list[Served], lock: threading.Lock) -> None:
        self.app, self.log, self.lock = app, log, lock

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        status: list[int] = [0]

        def start(st: str, headers: list[tuple[str, str]], *a: Any) -> Any:
            status[0] = int(st.split()[0])
            return start_response(st, headers, *a)

        sent = 0
        try:
            for chunk in self.app(environ, start):
                sent += len(chunk)
                yield chunk
        finally:
            with self.lock:
                self.log.append(Served(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""),
                                       environ.get("HTTP_RANGE"), status[0], sent))


@dataclass
class S3Server:
    url: str
    _moto: Any
    requests: list[Served] = field(default_factory=list)

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.url, "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options)

    def gets(self, key_part: str) -> list[Served]:
        """The GET requests whose path contains ``key_part``."""
        return [r for r in list(self.requests) if r.method == "GET" and key_part in r.path]

    def stop(self) -> None:
        self._moto.stop()


def start() -> S3Server:
    """Start moto's S3 server on a free port of 127.0.0.1 (in a thread of this process)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log on the test output
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    server = S3Server(url=f"http://{host}:{port}", _moto=moto)
    wsgi = moto._server  # the werkzeug server: wrap its app to record what is served
    wsgi.app = _Recorder(wsgi.app, server.requests, threading.Lock())
    return server
