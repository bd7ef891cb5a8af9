"""COCO in and out, one place to import from: the tables and their bytes (:mod:`.coco_tables`), the validator
(:mod:`.coco_validate`), the writer (:mod:`.coco_write`), and the shards of a file written in parts.

Example:
    >>> import orjson
    >>> from prelabel.model import Dataset
    >>> from prelabel.converters.coco import coco_bytes, to_coco, validate, validate_dataset
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [64], "height": [48]},
    ...                    annotations={"image": [0], "category": ["cat"], "x": [1.0], "y": [2.0],
    ...                                 "w": [3.0], "h": [4.0]})
    >>> coco = to_coco(ds)
    >>> validate(coco).ok, validate_dataset(ds).ok, orjson.loads(coco_bytes(ds)) == coco
    (True, True, True)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .coco_tables import DEFAULT_MAX_FILE_SIZE, CocoTables, category_ids, coco_bytes, load, to_coco
from .coco_validate import ValidationResult, fail_if_invalid, validate, validate_dataset
from .coco_write import split_shards, write, write_json_atomic

__all__ = ["DEFAULT_MAX_FILE_SIZE", "CocoTables", "ValidationResult", "category_ids", "coco_bytes",
           "expand_shards", "fail_if_invalid", "load", "split_shards", "to_coco", "validate", "validate_dataset",
           "write", "write_json_atomic"]


_SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<n>\d{3})$")


def expand_shards(path: str | Path) -> Sequence[Path]:
    """``out.json`` if it exists, else its shards ``out-001.json``, ... in order."""
    p = Path(path)
    if p.exists():
        return [p]
    found = sorted(p.parent.glob(f"{p.stem}-[0-9][0-9][0-9]{p.suffix}"))
    return found
