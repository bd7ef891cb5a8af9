"""The Label Studio REST client under :class:`.labelstudio.LabelStudioTarget`: the key (a legacy token, or a
personal access token exchanged for short-lived access tokens), one write at a time, GET and DELETE retried
with backoff on HTTP 500/502/503/504 and connection errors (never a POST), and errors told in one line (the
JSON ``detail``, or the exception line of an error page), the key never shown."""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import httpx

from ..errors import AuthError, NotFoundError, UploadError, UploadTimeoutError

log = logging.getLogger(__name__)

ENV_URL = "LABEL_STUDIO_URL"
ENV_KEY = "LABEL_STUDIO_API_KEY"
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)   # seconds before each retry of a GET or DELETE
AUTH_HINT = (f"set {ENV_KEY} to a legacy token or a personal access token (Label Studio: Account & Settings)")
_RETRY_STATUS = frozenset({500, 502, 503, 504})
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_TAGS = re.compile(r"<[^>]*>")
_DJANGO_TEXT = re.compile(r"\A\s*([A-Za-z_][\w.]*) at /\S*\r?\n(.*)")


def _text(fragment: str) -> str:
    """An HTML fragment as one line of plain text."""
    return " ".join(html.unescape(_TAGS.sub(" ", fragment)).split())


def _page_error(body: str) -> str:
    r"""The exception line of an error page that is not JSON: Django's debug page (``<title>OperationalError at
    /api/...</title>`` and ``<pre class="exception_value">``) or its text form, else the page's title and heading.

    >>> _page_error('<title>OperationalError\n  at /api/predictions/7</title>'
    ...             '<pre class="exception_value">database is locked</pre>')
    'OperationalError: database is locked'
    >>> _page_error("OperationalError at /api/predictions/7\ndatabase is locked\n\nRequest Method: DELETE")
    'OperationalError: database is locked'
    >>> _page_error("<html><title>500 | Label Studio</title><h1>Uh oh, something went wrong.</h1></html>")
    "an error page without details (500 | Label Studio: Uh oh, something went wrong.); the server's log has them"
    """
    title = re.search(r"<title[^>]*>(.*?)</title>", body, re.S | re.I)
    value = re.search(r'<pre class="exception_value">(.*?)</pre>', body, re.S)
    if title and value:
        kind = _text(title.group(1)).split(" at ", 1)[0]
        return f"{kind}: {_text(value.group(1))}"[:300]
    m = _DJANGO_TEXT.match(body)
    if m:
        return f"{m.group(1)}: {m.group(2).strip()}"[:300]
    if "<html" in body[:1000].lower() or title:
        h1 = re.search(r"<h1[^>]*>(.*?)</h1>", body, re.S | re.I)
        what = ": ".join(_text(g.group(1)) for g in (title, h1) if g is not None and _text(g.group(1)))
        return f"an error page without details ({what[:200] or 'HTML'}); the server's log has them"
    return " ".join(body.split())[:300]


def _is_jwt(token: str) -> bool:
    return _JWT.fullmatch(token) is not None


class LabelStudioClient:
    """Requests to the Label Studio at ``url`` with the API key ``token``: what every call of the target goes
    through (``retry_delays``: the pauses, in seconds, before each retry of a GET or DELETE)."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0,
                 retry_delays: Sequence[float] = RETRY_DELAYS, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._access: str | None = None
        self.retry_delays = tuple(float(d) for d in retry_delays)
        self._lock = threading.RLock()           # the access token (and a subclass's cached project state)
        self._write_lock = threading.Lock()     # one write at a time, whatever the number of shard workers
        self._client = httpx.Client(base_url=self.url, timeout=timeout, transport=transport,
                                    headers={"Accept": "application/json"}, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def _redact(self, text: str) -> str:
        for s in (self._token, self._access):
            if s:
                text = text.replace(s, "***")
        return text

    def _refresh(self) -> str:
        try:
            r = self._client.post("/api/token/refresh", json={"refresh": self._token})
        except httpx.HTTPError as e:
            raise UploadError(f"cannot reach Label Studio at {self.url}: {type(e).__name__}") from None
        if r.status_code in (400, 401, 403):
            raise AuthError(f"Label Studio at {self.url} refused the personal access token ({r.status_code})",
                            hint=AUTH_HINT)
        if r.status_code >= 300:
            raise UploadError(f"Label Studio token refresh failed: HTTP {r.status_code}")
        try:
            access = str(r.json()["access"])
        except (ValueError, KeyError, TypeError):
            raise UploadError("Label Studio token refresh answered without an access token") from None
        self._access = access
        return access

    def _auth_header(self, *, renew: bool = False) -> str:
        if not _is_jwt(self._token):
            return f"Token {self._token}"
        with self._lock:
            if renew or self._access is None:
                self._refresh()
            return f"Bearer {self._access}"

    def _request(self, method: str, path: str, *, what: str, deadline: float | None = None,
                 ok: Sequence[int] = (200, 201), not_found: str | None = None, **kw: Any) -> httpx.Response:
        """One request; a GET or DELETE is retried after ``retry_delays`` on 500/502/503/504 and connection errors
        (never a POST: an import that reached the server may have been applied). Writes go one at a time."""
        pauses = iter(self.retry_delays if method in ("GET", "DELETE") else ())
        while True:
            if deadline is not None and deadline - time.monotonic() <= 0:
                raise UploadTimeoutError(f"Label Studio: timed out before {what}")
            r: httpx.Response | None = None
            try:
                r = self._attempt(method, path, deadline=deadline, **kw)
                failure = f"HTTP {r.status_code} ({self._detail(r)})" if r.status_code in _RETRY_STATUS else ""
            except httpx.TimeoutException:
                raise UploadTimeoutError(f"Label Studio did not answer in time ({what})") from None
            except httpx.TransportError as e:
                failure = type(e).__name__
            if failure:
                pause = next(pauses, None)
                if pause is not None and (deadline is None or time.monotonic() + pause < deadline):
                    log.info("Label Studio: %s while %s; retrying in %g s", failure, what, pause)
                    time.sleep(pause)
                    continue
            if r is None:
                raise UploadError(f"cannot reach Label Studio at {self.url} ({what}): {failure}",
                                  hint=f"check {ENV_URL}")
            break
        if r.status_code in (401, 403):
            raise AuthError(f"Label Studio at {self.url} refused the API key ({r.status_code}) while {what}",
                            hint=AUTH_HINT)
        if r.status_code == 404 and not_found is not None:
            raise NotFoundError(not_found)
        if r.status_code not in ok:
            raise UploadError(f"Label Studio answered HTTP {r.status_code} while {what}: {self._detail(r)}")
        return r

    def _attempt(self, method: str, path: str, *, deadline: float | None, **kw: Any) -> httpx.Response:
        """Send once (a personal access token is exchanged again when the server says it expired)."""
        if deadline is not None:
            kw["timeout"] = httpx.Timeout(min(max(deadline - time.monotonic(), 0.001), 600.0))
        for attempt in (0, 1):
            headers = {"Authorization": self._auth_header(renew=attempt == 1)}   # outside the write lock
            with self._write_lock if method != "GET" else nullcontext():
                r = self._client.request(method, path, headers=headers, **kw)
            if r.status_code != 401 or attempt == 1 or not _is_jwt(self._token):
                break
        return r

    def _detail(self, r: httpx.Response) -> str:
        """What went wrong, in a line: the JSON ``detail`` (and validation errors), or the exception line of an
        error page (Django's debug page or its text form: ``OperationalError: database is locked``)."""
        try:
            body = r.json()
        except ValueError:
            return self._redact(_page_error(r.text) or r.reason_phrase)
        if isinstance(body, Mapping):
            parts = [_text(str(body.get("detail") or ""))]
            if body.get("validation_errors"):
                parts.append(str(body["validation_errors"]))
            text = "; ".join(p for p in parts if p) or str(body)
        else:
            text = str(body)
        return self._redact(text[:1000])

    def _json(self, r: httpx.Response, what: str) -> Any:
        try:
            return r.json()
        except ValueError:
            raise UploadError(f"Label Studio answered {what} with something that is not JSON") from None
