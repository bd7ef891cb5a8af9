"""A COCO shard's bytes parsed with a small transient: the ``annotations`` array a piece at a time.

``orjson.loads`` builds its own tree of the whole document before it makes the Python objects: for a 25 MB
shard of 155,000 boxes that tree costs about 75 MB on top of the objects while the call runs, and it was the
upload's peak. :func:`loads` cuts the ``annotations`` array into pieces of about ``piece`` bytes at the
boundaries between two objects (``}`` ``,`` ``{``), parses each piece as an array of its own, and the rest of the
document (with the last piece in its place) once; so the transient is one piece's tree.

The result equals ``orjson.loads(data)``: the same values, the keys in their order. A cut that falls inside a
string or a nested value cannot parse (the piece ends inside a string, or with a container left open), so
every piece that parses was cut between two elements of the array; after such a failed cut the next boundary
is tried. When eight cuts in a row fail, the key ``"annotations"`` is not there exactly once, or the array is
not the document's own, the whole document is parsed in one call, and its errors are orjson's.

Example:
    >>> import orjson
    >>> doc = {"images": [{"id": 1}], "annotations": [{"id": i, "bbox": [i, 0, 1, 1]} for i in range(1, 6)],
    ...        "categories": [{"id": 1, "name": "},{"}]}
    >>> data = orjson.dumps(doc)
    >>> loads(data, piece=40) == doc, loads(b'{"annotations": []}', piece=1)
    (True, {'annotations': []})
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["PIECE", "loads"]

PIECE = 4 << 20   # bytes of the annotations array parsed at once
_KEY = re.compile(rb'"annotations"\s*:\s*\[')
_SEP = re.compile(rb"\}\s*,\s*\{")
_TRIES = 8        # cuts tried in a row before the document is parsed whole
_MARK = "\x00prelabel: the pieces go here"
_MARK_JSON = orjson.dumps(_MARK)


def loads(data: bytes, *, piece: int = PIECE) -> Any:
    """``orjson.loads(data)``, the ``annotations`` array parsed ``piece`` bytes at a time (see the module)."""
    if len(data) <= 2 * piece:
        return orjson.loads(data)
    keys = _KEY.finditer(data)
    key = next(keys, None)
    if key is None or next(keys, None) is not None:
        return orjson.loads(data)
    opening = key.end() - 1          # the array's "["
    pieces: list[list[Any]] = []
    start = opening                  # where the next piece begins: the "[" of the array, then an element's "{"
    at = start + piece
    tries = 0
    while at < len(data):
        sep = _SEP.search(data, at)
        if sep is None:
            break
        cut = sep.start() + 1        # just after the "}" that ends the piece
        chunk = (b"" if start == opening else b"[") + data[start:cut] + b"]"
        try:
            got = orjson.loads(chunk)
        except orjson.JSONDecodeError:   # cut inside an element (a nested list of objects, a string): the next
            tries += 1
            if tries >= _TRIES:
                return orjson.loads(data)
            at = cut
            continue
        del chunk
        pieces.append(got)
        start = sep.end() - 1
        at, tries = start + piece, 0
    if not pieces:
        return orjson.loads(data)
    try:
        doc = orjson.loads(data[:opening] + b"[" + _MARK_JSON + b"," + data[start:])
    except orjson.JSONDecodeError:
        return orjson.loads(data)
    last = doc.get("annotations") if isinstance(doc, dict) else None
    if not isinstance(last, list) or not last or last[0] != _MARK:
        return orjson.loads(data)
    annotations: list[Any] = []
    for p in pieces:
        annotations.extend(p)
    del pieces
    del last[0]
    annotations.extend(last)
    doc["annotations"] = annotations
    return doc
