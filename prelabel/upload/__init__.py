"""Upload targets behind one interface: the local project (``local:DIR``), Labellerr and Label Studio.

``prelabel.upload.upload(coco, target)`` is the one call (see :mod:`prelabel.upload.driver`); targets are given
as Target objects or as spec strings. The local project (:mod:`prelabel.upload.local`) can also be served over
the Labellerr HTTP contract (:mod:`prelabel.upload.server`, ``prelabel serve DIR``).

Example:
    >>> from prelabel.upload import parse_target
    >>> parse_target("nowhere:1")
    Traceback (most recent call last):
    ...
    prelabel.errors.UsageError: unknown upload target 'nowhere' in 'nowhere:1'
"""

from __future__ import annotations

from .base import JobTarget, ShardResult, Target, UnmatchedFile, UploadResult
from .driver import UploadFuture, parse_target, upload
from .match import MatchRules, load_name_map

__all__ = ["JobTarget", "MatchRules", "ShardResult", "Target", "UnmatchedFile", "UploadFuture", "UploadResult",
           "load_name_map", "parse_target", "upload"]
