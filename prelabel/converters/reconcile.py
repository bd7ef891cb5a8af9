"""Category reconciliation: map source category names onto the target schema (ids follow the schema).

(Skeleton: the full implementation comes with the reconciliation work.)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..model import Dataset

__all__ = ["reconcile"]


def reconcile(ds: Dataset, *, mapping: Mapping[str, str | None] | str | Path | None = None,
              schema: Any = None, unknown: str = "error") -> Dataset:
    """Rename, merge, drop and renumber categories to match a target schema."""
    return ds
