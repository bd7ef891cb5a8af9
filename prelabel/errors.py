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

Options named in a message or hint are written with :func:`option`, never spelled out: the text then names
the Python keyword (``ReadOptions(cvat_points='keypoints')`` for a reading option) for a Python caller and the flag (``--cvat-points keypoints``)
on the command line, which runs each command inside :func:`cli_spelling`. Errors, hints and the
report's messages (:mod:`prelabel.report`) are spelled when they are shown, by :func:`spell`.

Example:
    >>> from prelabel.errors import ReadError, UsageError, option, spell
    >>> str(ReadError("labels/a.txt", "expected 5 numbers, got 4", line=3))
    'labels/a.txt:3: expected 5 numbers, got 4'
    >>> e = UsageError("no names", hint=f"give {option('names', 'cat,dog')} or {option('normalized', False)}")
    >>> e.hint
    "give ReadOptions(names='cat,dog') or ReadOptions(normalized=False)"
    >>> spell(e.raw_hint, cli=True)
    'give --names cat,dog or --absolute'
"""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import re
from collections.abc import Iterator
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
    "by_face",
    "cli_spelling",
    "for_face",
    "option",
    "spell",
]

# how a Python option is spelled on the command line where it is not --name-with-dashes VALUE
_CLI_FLAG = {"columns": "--column", "fmt": "--from", "mapping": "--map"}
_CLI_BOOL = {"normalized": ("--normalized", "--absolute")}
# options that a Python caller gives inside ``extra={...}``
_IN_EXTRA = frozenset({"data_yaml", "kpt_shape", "label_config"})
# the reading options a Python caller gives inside ``ReadOptions(...)`` (prelabel.adapters.base.ReadOptions)
_READ_OPTIONS = frozenset({"images", "task", "voc_origin", "cvat_points", "frame_pattern", "points", "ls_select",
                           "ls_annotator", "columns", "box_format", "normalized", "names", "images_from", "extra"})
_MARK = re.compile(r"\{option:([a-z_]+)(?:=(.*?))?\}")
# Who is calling: the command line (options spelled as flags) or Python (keywords). One process-wide state, not a
# context variable: an upload's worker threads record report lines and hints for the same caller.
_FACE = {"cli": False}


def option(name: str, value: object = None) -> str:
    """An option (its Python keyword ``name``, and optionally a ``value``) named in a message or hint; shown as
    ``name=value`` to a Python caller and as ``--name value`` on the command line (see :func:`spell`). A string
    value in capitals (``"ROLE=NAME"``) is a placeholder, written bare."""
    return "{option:" + name + ("" if value is None else "=" + repr(value)) + "}"


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Spell options as command-line flags inside the block (the command line runs each command in one)."""
    before = _FACE["cli"]
    _FACE["cli"] = True
    try:
        yield
    finally:
        _FACE["cli"] = before


def spell(text: str, *, cli: bool | None = None) -> str:
    """``text`` with every :func:`option` written for its reader: the command line's flags when ``cli`` (by
    default, inside :func:`cli_spelling`), else Python keywords."""
    if "{option:" not in text:
        return text
    as_cli = _FACE["cli"] if cli is None else cli
    return _MARK.sub(lambda m: _spell_one(m.group(1), m.group(2), as_cli), text)


def _spell_one(name: str, raw: str | None, cli: bool) -> str:
    value: Any = None
    if raw is not None:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
    placeholder = isinstance(value, str) and value.replace("=", "").replace("_", "").isupper()
    if cli:
        if name in _CLI_BOOL and isinstance(value, bool):
            return _CLI_BOOL[name][0 if value else 1]
        flag = _CLI_FLAG.get(name, "--" + name.replace("_", "-"))
        if value is None or value is True:
            return flag
        return f"{flag} {value}"
    if value is None:  # a keyword to fill in
        kw = f"extra={{'{name}': ...}}" if name in _IN_EXTRA else f"{name}=..."
    elif name == "columns" and isinstance(value, str) and "=" in value:
        role, col = value.split("=", 1)
        kw = "columns=" + (f"{{{role}: {col}}}" if placeholder else f"{{{role!r}: {col!r}}}")
    else:
        shown = value if placeholder else repr(value)
        kw = f"extra={{'{name}': {shown}}}" if name in _IN_EXTRA else f"{name}={shown}"
    return f"ReadOptions({kw})" if name in _READ_OPTIONS or name in _IN_EXTRA else kw



# a flag (and its value, when the hint gives one) -> the same advice in Python's words
_PY_WORDS: list[tuple[str, str]] = [
    (r"--allow-empty", "allow_empty=True"),
    (r"--match-case-insensitive", "match=MatchRules(fold_case=True)"),
    (r"--match-any-extension", "match=MatchRules(fold_extension=True)"),
    (r"--strip-prefix (\S+)", r'match=MatchRules(strip_prefixes=("\1",))'),
    (r"--strip-prefix", "match=MatchRules(strip_prefixes=...)"),
    (r"--name-map FILE", "match=MatchRules(name_map=load_name_map(FILE))"),
    (r"--name-map", "match=MatchRules(name_map=...)"),
    (r"--from (\w+)", r'fmt="\1"'),
    (r"--from", "fmt="),
    (r"--unknown (\w+)", r'unknown="\1"'),
    (r"--map FILE", "mapping=FILE"),
    (r"--map", "mapping="),
    (r"--schema", "schema="),
    (r"--images-from (\S+)", r'ReadOptions(images_from="\1")'),
    (r"--images-from", "ReadOptions(images_from=...)"),
    (r"--images DIR", "ReadOptions(images=DIR)"),
    (r"--images", "ReadOptions(images=...)"),
    (r"--names", "ReadOptions(names=[...])"),
    (r"--task (\w+)", r'ReadOptions(task="\1")'),
    (r"--strict", "strict=True"),
    (r"--engine (\w+)", r'engine="\1"'),
    (r"--conf-bucket", "conf_bucket="),
    (r"--create-project TITLE", 'create_project="TITLE"'),
    (r"--create-project", "create_project="),
    (r"--min-score", "min_score="),
    (r"--resend-unconfirmed", "resend_unconfirmed=True"),
    (r"--mode (\w+)", r'mode="\1"'),
    (r"'prelabel formats'", "prelabel.FORMATS"),
    (r"\brerun with\b", "call again with"),
    (r"\buse prelabel push\b", "use prelabel.push"),
]


def by_face(*, cli: str, python: str) -> str:
    """The text for the caller's face.

    >>> by_face(cli="pass --allow-empty", python="pass allow_empty=True")
    'pass allow_empty=True'
    """
    return cli if _FACE["cli"] else python


def for_face(hint: str) -> str:
    """A hint written with command-line flags, in the caller's words: unchanged for the command line; for a
    Python caller, each flag becomes the keyword that does the same.

    >>> for_face("rerun with --match-case-insensitive")
    'call again with match=MatchRules(fold_case=True)'
    >>> for_face("give the format with --from yolo (see 'prelabel formats')")
    'give the format with fmt="yolo" (see prelabel.FORMATS)'
    """
    if _FACE["cli"] or "-" not in hint and "rerun" not in hint:
        return hint
    out = hint
    for flag, words in _PY_WORDS:
        out = re.sub(flag if flag.startswith("\\b") or flag.startswith("'") else r"(?<![\w-])" + flag + r"(?![\w-])",
                     words, out)
    return out


class PrelabelError(Exception):
    """Base of every error prelabel raises on purpose.

    ``hint`` is one line telling the user what to do about it (may be empty).
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.raw_message = message
        self.raw_hint = hint

    @property
    def message(self) -> str:
        return spell(self.raw_message)

    @property
    def hint(self) -> str:
        """What to do, naming options as the reader gives them (see :func:`spell`)."""
        return spell(for_face(self.raw_hint))

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

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its fields (a part read in a worker process raises it in the caller as it is)."""
        return _rebuilt, (type(self), self.args, self.__dict__)


def _rebuilt(cls: type[ReadError], args: tuple[Any, ...], state: dict[str, Any]) -> ReadError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


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
