"""Labellerr credentials: where they come from, and how they are kept out of every text prelabel prints.

Lookup order (the first complete source wins, field by field for the environment):

1. explicit values passed by the caller;
2. the environment: ``LABELLERR_API_KEY``, ``LABELLERR_API_SECRET``, ``LABELLERR_CLIENT_ID``
   (and ``LABELLERR_BASE_URL`` for the service address, default ``https://api.labellerr.com``);
3. a config file: ``$PRELABEL_CONFIG``, else ``~/.config/prelabel/labellerr.toml`` or ``labellerr.json``, holding
   ``api_key``, ``api_secret``, ``client_id`` and optionally ``base_url`` (at the top level or under a
   ``[labellerr]`` table).

A :class:`Credentials` object never shows its secret values: ``repr`` and ``str`` mask them, and
:func:`redact` scrubs them from any text (error bodies echoed by a server, for instance).

Example:
    >>> c = Credentials(api_key="KEY-1234567", api_secret="SECRET-abc-987", client_id="42")
    >>> c
    Credentials(api_key='KEY…', api_secret='***', client_id='***')
    >>> redact("server said: bad secret SECRET-abc-987", c)
    'server said: bad secret ***'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AuthError, UsageError

__all__ = ["DEFAULT_BASE_URL", "ENV_VARS", "Credentials", "load_credentials", "redact"]

DEFAULT_BASE_URL = "https://api.labellerr.com"
ENV_VARS = ("LABELLERR_API_KEY", "LABELLERR_API_SECRET", "LABELLERR_CLIENT_ID")
_HINT = ("set LABELLERR_API_KEY, LABELLERR_API_SECRET and LABELLERR_CLIENT_ID (from the workspace's API-keys "
         "page), or put api_key / api_secret / client_id in ~/.config/prelabel/labellerr.toml or $PRELABEL_CONFIG")


@dataclass(frozen=True)
class Credentials:
    """The three Labellerr credentials. ``repr`` shows only the key's first characters."""

    api_key: str
    api_secret: str
    client_id: str

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.api_key[:3] + '…'!r}, api_secret='***', client_id='***')"

    __str__ = __repr__

    def secrets(self) -> list[str]:
        """The values that must never be printed (the client id is an identifier, but is scrubbed as well)."""
        return [v for v in (self.api_secret, self.api_key, self.client_id) if v and len(v) >= 4]


def redact(text: str, creds: Credentials | None) -> str:
    """``text`` with every credential value replaced by ``***``."""
    if creds is None:
        return text
    for v in sorted(creds.secrets(), key=len, reverse=True):
        text = text.replace(v, "***")
    return text


def _config_paths() -> list[Path]:
    env = os.environ.get("PRELABEL_CONFIG")
    if env:
        return [Path(env).expanduser()]
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "prelabel"
    return [base / "labellerr.toml", base / "labellerr.json"]


def _read_config(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read the config file {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            doc: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            doc = json.loads(raw)
    except ImportError:  # pragma: no cover - Python 3.10 has no tomllib
        raise UsageError(f"{path}: TOML config files need Python 3.11; use a .json file") from None
    except ValueError as e:  # TOMLDecodeError and JSONDecodeError are ValueErrors; never echo the content
        raise UsageError(f"{path}: not a valid config file ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: expected a table of api_key, api_secret, client_id")
    section = doc.get("labellerr")
    return dict(section) if isinstance(section, dict) else dict(doc)


def load_credentials(*, api_key: str | None = None, api_secret: str | None = None, client_id: str | None = None,
                     base_url: str | None = None) -> tuple[Credentials, str]:
    """The credentials and base URL, from the arguments, the environment or the config file.

    Raises AuthError (naming the environment variables, never a value) when one of the three is missing.
    """
    vals: dict[str, str | None] = {
        "api_key": api_key or os.environ.get("LABELLERR_API_KEY"),
        "api_secret": api_secret or os.environ.get("LABELLERR_API_SECRET"),
        "client_id": client_id or os.environ.get("LABELLERR_CLIENT_ID"),
    }
    url = base_url or os.environ.get("LABELLERR_BASE_URL")
    if not all(vals.values()) or not url:
        for path in _config_paths():
            if path.is_file():
                cfg = _read_config(path)
                for k in vals:
                    if not vals[k] and cfg.get(k):
                        vals[k] = str(cfg[k])
                url = url or (str(cfg["base_url"]) if cfg.get("base_url") else None)
                break
    missing = [k for k, v in vals.items() if not v]
    if missing:
        raise AuthError(f"Labellerr credentials missing: {', '.join(missing)}", hint=_HINT)
    creds = Credentials(api_key=str(vals["api_key"]), api_secret=str(vals["api_secret"]),
                        client_id=str(vals["client_id"]))
    return creds, (url or DEFAULT_BASE_URL).rstrip("/")


AUTH_HINT = _HINT
