"""Reading Labellerr's job status replies: what the service confirmed, what prelabel estimates.

Two shapes are known (``shared/LABELLERR_API.md``): the one recorded from the service,
``metadata{activity_id, files_not_updated: [names verbatim], questions_ignored: [...]}``, which holds no count of
applied annotations; and the documented one, ``metadata{total_annotations, matched_files, unmatched_files,
processing_time_seconds}`` with INTEGER counts and ``activity_id`` beside ``status``. Both are read; a list where
a count is documented (or the reverse) is read as well.

When the reply has ``total_annotations``, that is the applied count (``applied_source="service"``). Otherwise
prelabel counts the file's annotations on the images the service did not list as not updated, of the
categories it did not list as ignored: an estimate (``applied_source="estimate"``).

Example:
    >>> coco = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
    ...         "categories": [{"id": 1, "name": "cat"}],
    ...         "annotations": [{"id": 1, "image_id": 1, "category_id": 1}, {"id": 2, "image_id": 2, "category_id": 1}]}
    >>> doc = {"response": {"status": "completed", "metadata": {"files_not_updated": ["b.png"]}}}
    >>> r = read_result(doc, job_id="j1", index=1, path=Path("x.json"), coco=coco, renames={})
    >>> r.annotations_applied, r.applied_source, r.files_matched, [u.name for u in r.files_not_matched]
    (1, 'estimate', 1, ['b.png'])
    >>> doc = {"response": {"status": "completed", "activity_id": "j1",
    ...        "metadata": {"total_annotations": 1, "matched_files": 1, "unmatched_files": 3}}}
    >>> r = read_result(doc, job_id="j1", index=1, path=Path("x.json"), coco=coco, renames={})
    >>> r.annotations_applied, r.applied_source, r.not_matched
    (1, 'service', 3)
    >>> failure_reason({"response": {"status": "failed", "metadata": {"details": {"code": 7}}}})
    'no known field holds the reason; the reply: {"response":{"status":"failed","metadata":{"details":{"code":7}}}}'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from .base import ShardResult, UnmatchedFile
from .credentials import Credentials, redact
from .match import MatchResult, MatchRules, match_names

__all__ = ["failure_reason", "inner", "read_result", "redact_reply"]

#: where a failed job's reason may be (the service's failure shape is not documented: these are guesses)
REASON_KEYS = ("error", "reason", "error_message", "failure_reason", "message", "detail")
#: the keys naming a question in a questions_ignored entry that is an object (a guess: not recorded)
QUESTION_KEYS = ("question_name", "question", "name", "label", "title")
REPLY_SHOWN = 800


def inner(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The reply's ``response`` object, or the reply itself when it is not wrapped."""
    r = doc.get("response")
    return dict(r) if isinstance(r, Mapping) else dict(doc)


def redact_reply(doc: Mapping[str, Any], creds: Credentials | None) -> dict[str, Any]:
    """``doc`` with every credential value replaced by ``***`` (a copy)."""
    text = orjson.dumps(doc, default=str).decode()
    clean = redact(text, creds)
    try:
        out = orjson.loads(clean)
    except orjson.JSONDecodeError:   # a secret with JSON escapes in it: keep the redacted text
        return {"redacted_reply": clean}
    return dict(out) if isinstance(out, dict) else {"reply": out}


def _short(v: Any, n: int = 500) -> str:
    text = v if isinstance(v, str) else orjson.dumps(v, default=str).decode()
    return text if len(text) <= n else text[:n] + "…"


def failure_reason(reply: Mapping[str, Any]) -> str:
    """The reason of a failed job: a known field of the metadata, the response or the reply, else the reply
    itself (truncated). Call it with a redacted reply."""
    resp = inner(reply)
    meta = resp.get("metadata")
    for src in (meta if isinstance(meta, Mapping) else {}, resp, reply):
        for key in REASON_KEYS:
            v = src.get(key)
            if v in (None, "", [], {}) or (key == "message" and str(v).startswith("200")):
                continue   # the wrapper's "200: Success" is no reason
            return _short(v)
    return "no known field holds the reason; the reply: " + _short(dict(reply), REPLY_SHOWN)


def _names(v: Any) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else []


def _count(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def question_names(v: Any) -> list[str]:
    """The names in ``questions_ignored``: strings, or objects holding a name (a guess at their keys)."""
    out = []
    for q in v if isinstance(v, list) else []:
        if isinstance(q, Mapping):
            name = next((q[k] for k in QUESTION_KEYS if isinstance(q.get(k), str) and q.get(k)), None)
            out.append(str(name) if name is not None else _short(dict(q), 120))
        else:
            out.append(str(q))
    return out


def read_result(doc: Mapping[str, Any], *, job_id: str, index: int, path: Path, coco: Mapping[str, Any] | None,
                renames: Mapping[str, tuple[str, str]],
                assets: Callable[[], list[str] | None] | None = None, rules: MatchRules | None = None,
                matches: MatchResult | None = None) -> ShardResult:
    """A completed job's ShardResult from its (redacted) final status reply ``doc``.

    ``renames``: COCO name -> (the name sent, rule). ``matches``: the names of ``coco`` matched to the project's
    file names (for the closest-name hints of the images the service did not match); without it, those images
    are matched to ``assets()`` with ``rules``: the project's file names, or None when they cannot be read.
    """
    resp = inner(doc)
    raw = resp.get("metadata")
    meta: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    not_updated = _names(meta.get("files_not_updated")) or _names(meta.get("unmatched_files"))
    unmatched_count = _count(meta.get("unmatched_files"))
    ignored = sorted(set(question_names(meta.get("questions_ignored"))))
    activity = str(resp.get("activity_id") or meta.get("activity_id") or job_id)
    images = list((coco or {}).get("images") or [])
    names = [str(im.get("file_name", "")) for im in images]
    sent = [renames[n][0] if n in renames else n for n in names]
    # the service matches exactly: a name it reports is the name we sent, verbatim
    reported = set(not_updated)
    unmatched_names = [n for n, x in zip(names, sent, strict=True) if x in reported]
    others = [x for x in dict.fromkeys(not_updated) if x not in set(sent)]   # not a name we sent: kept as is
    matched_by = Counter(renames[n][1] if n in renames else "exact"
                         for n, x in zip(names, sent, strict=True) if x not in reported)
    if matches is None and assets is not None and unmatched_names:
        listed = assets()
        matches = match_names(unmatched_names, listed, rules=rules) if listed is not None else None
    unmatched = _hints(unmatched_names, matches)
    unmatched += [UnmatchedFile(x) for x in others]
    matched_files = meta.get("matched_files")
    matched_count = _count(matched_files)
    if isinstance(matched_files, list):
        files_matched = len(matched_files)
    elif matched_count is not None:
        files_matched = matched_count
    else:
        files_matched = len(names) - len(unmatched_names)
    total = _count(meta.get("total_annotations"))
    if total is not None:
        applied, source = total, "service"
    else:   # estimate: the file's annotations less those of reported images and ignored categories
        bad = set(unmatched_names)
        bad_imgs = {int(im["id"]) for im, n in zip(images, names, strict=True) if n in bad}
        cats = {int(c["id"]): str(c.get("name")) for c in (coco or {}).get("categories") or []}
        applied = sum(1 for a in (coco or {}).get("annotations") or []
                      if int(a["image_id"]) not in bad_imgs and cats.get(int(a["category_id"])) not in ignored)
        source = "estimate"
    return ShardResult(index=index, path=str(path), status="completed", activity_id=activity,
                       annotations_applied=applied, files_matched=files_matched, files_not_matched=unmatched,
                       categories_ignored=ignored, matched_by=dict(matched_by), applied_source=source,
                       files_not_matched_count=unmatched_count, service_reply=dict(doc))


def _hints(names: list[str], m: MatchResult | None) -> list[UnmatchedFile]:
    """The closest project file names for the names Labellerr did not match (and which rule would match them),
    from ``m``, their match to the project's file names (None: they could not be read)."""
    if m is None:
        return [UnmatchedFile(n) for n in names]
    hints = {u.name: u for u in m.unmatched}
    out = []
    for n in names:
        if n in hints:
            out.append(hints[n])
        else:  # prelabel's rules match it, and it was sent under the project's name: the service still did not
            out.append(UnmatchedFile(n, [m.matched[n]], "service",
                                     f"sent as {m.matched[n]!r}, the service did not match it: check the "
                                     "project's file list, or rename the image in the project or the COCO file"))
    return out
