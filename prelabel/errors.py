"""The exceptions prelabel raises.

Every error prelabel raises on purpose derives from :class:`PrelabelError`; anything else escaping is a bug.
The CLI turns these into one line of what went wrong, one line of what to do, and an exit code::

    PrelabelError                     exit 1 unless noted
    ├── ReadError                     a source file is malformed: names the file and line or element
    │   └── FormatDetectionError      no format, or several, match a source (exit 2)
    ├── CategoryError                 unknown categories under --unknown error, a bad mapping or schema
    ├── ValidationError               a COCO file breaks the rules the writer and the targets rely on
    ├── StrictError                   --strict and the report holds diagnostics
    ├── UsageError                    options that contradict each other (exit 2)
    └── UploadError                   a target refused or failed an upload
        ├── AuthError                 401/403: bad credentials or no access
        ├── NotFoundError             unknown project or resource
        ├── JobFailedError            the server accepted the file but the job failed
        ├── UnconfirmedUploadError    the file was sent and the reply lost: it may have been applied
        ├── ShardTooLargeError        the server refused the file's size (413): split it and send again
        ├── UploadTimeoutError        the job did not finish within the timeout
        └── UploadCancelledError      the caller cancelled (also a concurrent.futures.CancelledError)

Example:
    >>> from prelabel.errors import ReadError
    >>> str(ReadError("labels/a.txt", "expected 5 numbers, got 4", line=3))
    'labels/a.txt:3: expected 5 numbers, got 4'
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

__all__ = [
    "AuthError",
    "CategoryError",
    "FormatDetectionError",
    "JobFailedError",
    "NotFoundError",
    "PrelabelError",
    "ReadError",
    "StrictError",
    "ShardTooLargeError",
    "UnconfirmedUploadError",
    "UploadCancelledError",
    "UploadError",
    "UploadTimeoutError",
    "UsageError",
    "ValidationError",
]


class PrelabelError(Exception):
    """Base of every error prelabel raises on purpose.

    ``hint`` is one line telling the user what to do about it (may be empty).
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ReadError(PrelabelError):
    """A source file could not be read: names the file and the line (or element) at fault."""

    def __init__(self, file: str, message: str, *, line: int | None = None, element: str | None = None,
                 hint: str = "") -> None:
        where = str(file)
        if line:
            where += f":{line}"
        if element:
            where += f"#{element}"
        super().__init__(f"{where}: {message}", hint=hint)
        self.file = str(file)
        self.line = line
        self.element = element
        self.reason = message


class FormatDetectionError(ReadError):
    """No adapter, or more than one, recognises the source; ``candidates`` lists the close ones."""

    exit_code = 2

    def __init__(self, file: str, message: str, *, candidates: list[str] | None = None, hint: str = "") -> None:
        super().__init__(file, message, hint=hint)
        self.candidates = list(candidates or [])


class CategoryError(PrelabelError):
    """Categories that cannot be reconciled with the target schema."""


class ValidationError(PrelabelError):
    """A COCO file or dataset that breaks the rules; ``problems`` lists them."""

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])


class StrictError(PrelabelError):
    """``--strict`` was given and the report holds warnings or errors."""


class UsageError(PrelabelError):
    """Options that cannot be used together, or a value out of range."""

    exit_code = 2


class UploadError(PrelabelError):
    """An upload failed; never carries credentials in its text."""


class AuthError(UploadError):
    """The server answered 401 or 403."""


class NotFoundError(UploadError):
    """The project (or another resource) does not exist."""


class JobFailedError(UploadError):
    """The server took the file, then reported the job as failed; ``reply`` is its status reply (redacted)."""

    def __init__(self, message: str, *, hint: str = "", reply: dict[str, Any] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reply = reply


class UnconfirmedUploadError(UploadError):
    """The file was sent but no usable reply came back (a read timeout, a dropped connection, a 500, 502 or
    504): the service may have taken it. It must not be sent again blindly; the message says how to check."""


class ShardTooLargeError(UploadError):
    """The server refused the file as too large (413): nothing was taken; send it again in smaller parts."""


class UploadTimeoutError(UploadError):
    """The job did not reach a final state in time."""


class UploadCancelledError(UploadError, concurrent.futures.CancelledError):
    """The caller cancelled the upload; raised at the next safe point (between shards, tries or polls)."""
