"""Class-name lists: data.yaml (``names`` as list or dict, ``nc``), classes.txt, obj.names, obj.data.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "classes.txt"
    >>> _ = p.write_text("cat\\ndog\\n")
    >>> read_names(p)
    ['cat', 'dog']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ReadError

__all__ = ["names_from_yaml", "read_names"]


def names_from_yaml(doc: Any, file: str) -> list[str] | None:
    """Class names from a parsed data.yaml: ``names`` list or ``{index: name}`` dict, checked against ``nc``."""
    if not isinstance(doc, dict):
        raise ReadError(file, "expected a YAML mapping")
    names = doc.get("names")
    nc = doc.get("nc")
    out: list[str] | None
    if names is None:
        out = [str(i) for i in range(int(nc))] if isinstance(nc, int) else None
    elif isinstance(names, list):
        out = [str(n) for n in names]
    elif isinstance(names, dict):
        try:
            keyed = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise ReadError(file, "names: keys must be class indices (0, 1, ...)", element="names") from None
        if sorted(keyed) != list(range(len(keyed))):
            raise ReadError(file, f"names: indices must be 0..{len(keyed) - 1} without gaps, got {sorted(keyed)}",
                            element="names")
        out = [keyed[i] for i in range(len(keyed))]
    else:
        raise ReadError(file, "names must be a list or a mapping of index to name", element="names")
    if out is not None and isinstance(nc, int) and nc != len(out):
        raise ReadError(file, f"nc is {nc} but names lists {len(out)} classes", element="nc")
    return out


def read_names(path: str | Path) -> list[str]:
    """Names from a YAML file (data.yaml) or a text file with one name per line (classes.txt, obj.names)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ReadError(str(p), f"cannot read class names: {e}") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ReadError(str(p), f"not valid YAML: {e}") from None
        names = names_from_yaml(doc, str(p))
        if names is None:
            raise ReadError(str(p), "no 'names' or 'nc' in the file")
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]
