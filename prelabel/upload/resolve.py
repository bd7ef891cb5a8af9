"""Resolve one COCO shard against a project: which images match an asset, which categories the schema knows,
and so which annotations would be applied. Shared by the dry run of every target and by the local project.

Example:
    >>> coco = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "B.jpg"}],
    ...         "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "zebra"}],
    ...         "annotations": [{"id": 1, "image_id": 1, "category_id": 1}, {"id": 2, "image_id": 1, "category_id": 2},
    ...                         {"id": 3, "image_id": 2, "category_id": 1}]}
    >>> r = resolve_shard(coco, assets=["a.jpg", "b.jpg"], categories=["cat", "dog"])
    >>> r.annotations_applied, r.files_matched, r.categories_ignored, r.unmatched[0].why, r.applied_assets
    (1, 1, ['zebra'], 'case', ['a.jpg'])
    >>> from prelabel.upload.match import MatchRules
    >>> r = resolve_shard(coco, assets=["a.jpg", "b.jpg"], categories=["cat"], match=MatchRules(fold_case=True))
    >>> r.annotations_applied, r.how
    (2, {'exact': 1, 'case': 1})
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import ShardResult, UnmatchedFile
from .match import MatchResult, MatchRules, match_names

__all__ = ["Resolution", "resolve_shard"]


@dataclass
class Resolution:
    """The outcome of matching a shard: image id -> asset name, kept annotations, and what is left out."""

    image_asset: dict[int, str] = field(default_factory=dict)
    how: dict[str, int] = field(default_factory=dict)          # match rule -> number of images
    unmatched: list[UnmatchedFile] = field(default_factory=list)
    categories_ignored: list[str] = field(default_factory=list)
    keep: list[int] = field(default_factory=list)               # positions in coco["annotations"] to apply
    applied_assets: list[str] = field(default_factory=list)     # assets that receive an annotation, in order
    skipped_unmatched: int = 0
    skipped_category: int = 0

    @property
    def annotations_applied(self) -> int:
        return len(self.keep)

    @property
    def files_matched(self) -> int:
        return len(self.image_asset)

    def shard_result(self, *, index: int, path: str, status: str = "completed",
                     activity_id: str | None = None) -> ShardResult:
        return ShardResult(index=index, path=path, status=status, activity_id=activity_id,
                           annotations_applied=self.annotations_applied, files_matched=self.files_matched,
                           files_not_matched=list(self.unmatched), categories_ignored=list(self.categories_ignored),
                           matched_by=dict(self.how))


def resolve_shard(coco: Mapping[str, Any], *, assets: Sequence[str], categories: Sequence[str] | None,
                  match: MatchRules | None = None, exact: bool = False) -> Resolution:
    """Match the shard's images to ``assets`` (with the optional ``match`` rules) and its categories to
    ``categories`` (None: every category is accepted, the project has no schema yet). ``exact``: names match
    only when equal, byte for byte and case-sensitively (Labellerr's matching; ``match`` is then unused)."""
    res = Resolution()
    images = list(coco.get("images") or [])
    names = [str(im.get("file_name", "")) for im in images]
    if exact:
        asset_set = set(assets)
        m = MatchResult()
        for n in names:
            if n in asset_set:
                m.matched[n], m.how[n] = n, "exact"
            else:
                m.unmatched.append(UnmatchedFile(n))
    else:
        m = match_names(names, assets, rules=match)
    for im, name in zip(images, names, strict=True):
        asset = m.matched.get(name)
        if asset is not None:
            res.image_asset[int(im["id"])] = asset
    per_name = Counter(names)   # not names.count(name) for each name: that was 1.7 s for 10,000 names
    for name, how in m.how.items():
        res.how[how] = res.how.get(how, 0) + per_name[name]
    res.unmatched = list(m.unmatched)
    known = set(categories) if categories is not None else None
    cat_name = {int(c["id"]): str(c.get("name", "")) for c in coco.get("categories") or []}
    ignored_ids = {cid for cid, n in cat_name.items() if known is not None and n not in known}
    res.categories_ignored = sorted({cat_name[c] for c in ignored_ids})
    matched_ids = set(res.image_asset)
    anns = list(coco.get("annotations") or [])
    for i, a in enumerate(anns):
        if int(a["image_id"]) not in matched_ids:
            res.skipped_unmatched += 1
        elif int(a["category_id"]) in ignored_ids:
            res.skipped_category += 1
        else:
            res.keep.append(i)
    res.applied_assets = list(dict.fromkeys(res.image_asset[int(anns[i]["image_id"])] for i in res.keep))
    return res
