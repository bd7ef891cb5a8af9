"""Class-name lists: data.yaml (``names`` as list or dict, ``nc``), classes.txt, obj.names, obj.data.

``read_names`` reads any of them; ``find_names`` looks for the first one in a list of folders; ``locate`` finds a
path written inside a dataset file (``data/obj.names`` in an obj.data, ``../train/images`` in a data.yaml)
under trusted roots, stripping leading components when the literal path is not there, and never leaving the
roots (``..`` and absolute paths are only ever stripped, never followed).

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "classes.txt").write_text("cat\\ndog\\n")
    >>> read_names(d / "classes.txt")
    ['cat', 'dog']
    >>> _ = (d / "obj.data").write_text("classes = 2\\nnames = data/classes.txt\\n")
    >>> read_names(d / "obj.data")
    ['cat', 'dog']
    >>> find_names([d])[0], find_names([d])[1].name
    (['cat', 'dog'], 'classes.txt')
    >>> locate("/somewhere/else/classes.txt", [d]) == d / "classes.txt"
    True
    >>> len(COCO_NAMES), COCO_NAMES[0], COCO_NAMES[79]
    (80, 'person', 'toothbrush')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ReadError, option

# The 80 class names of the pretrained Ultralytics (and most COCO-trained) detectors, in class-index order: what
# `--names coco` gives a model that has no data.yaml.
COCO_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

__all__ = ["COCO_NAMES", "NAME_FILES", "find_names", "load_yaml", "locate", "names_from_yaml", "parse_obj_data",
           "read_names", "split_parts", "yaml_error"]

_MAX_CLASSES = 1_000_000  # an nc above this is a broken file (names "0".."nc-1" would be built)
# looked for in this order in each folder by find_names
NAME_FILES = ("data.yaml", "data.yml", "classes.txt", "obj.names", "obj.data")


def load_yaml(text: str) -> Any:
    """A data.yaml as the user wrote it: no word is read as a boolean (YAML 1.1 reads ``names: [on, off, yes,
    no]`` as ``[True, False, True, False]``, merging four classes into two); numbers, lists and mappings as
    usual. Raises ``yaml.YAMLError``.

        >>> load_yaml("names: [on, off, yes, no, true]\\nnc: 5")
        {'names': ['on', 'off', 'yes', 'no', 'true'], 'nc': 5}
    """
    import yaml

    global _loader
    if _loader is None:
        class _WordsLoader(yaml.SafeLoader):
            pass

        # a copy of SafeLoader's implicit resolvers without the boolean one
        _WordsLoader.yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
        _loader = _WordsLoader
    return yaml.load(text, Loader=_loader)  # noqa: S506 (a SafeLoader subclass)


_loader: Any = None


def names_from_yaml(doc: Any, file: str) -> list[str] | None:
    """Class names from a parsed data.yaml: ``names`` list or ``{index: name}`` dict, checked against ``nc``."""
    if not isinstance(doc, dict):
        raise ReadError(file, "expected a YAML mapping")
    names = doc.get("names")
    nc = doc.get("nc")
    out: list[str] | None
    if isinstance(nc, int) and not 0 <= nc <= _MAX_CLASSES:
        raise ReadError(file, f"nc must be a class count from 0 to {_MAX_CLASSES}, got {nc}", element="nc")
    values = names if isinstance(names, list) else names.values() if isinstance(names, dict) else []
    if any(isinstance(n, (list, dict, set)) for n in values):
        raise ReadError(file, "names: each class name must be a plain value, not a list or mapping",
                        element="names")
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
    if out is not None and not all(n.strip() for n in out):
        i = next(k for k, n in enumerate(out) if not n.strip())
        raise ReadError(file, f"names: class {i} has an empty name", element="names")
    if out is not None and isinstance(nc, int) and nc != len(out):
        raise ReadError(file, f"nc is {nc} but names lists {len(out)} classes", element="nc")
    return out


def parse_obj_data(text: str) -> dict[str, str]:
    """The ``key = value`` lines of a Darknet ``obj.data`` (``#`` starts a comment)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip().lower()] = v.strip()
    return out


def split_parts(name: str) -> list[str]:
    """The components of a path written in a file (``/`` or ``\\``), without empty and ``.`` parts."""
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def locate(name: str, roots: Sequence[str | Path], *, want_dir: bool | None = None) -> Path | None:
    """The existing path that ``name`` (written inside a dataset file) points to under one of ``roots``.

    Tries ``root/name`` for each root, then drops leading components one at a time (``data/obj.names`` ->
    ``obj.names``, ``../train/images`` -> ``train/images``, ``/abs/ds/images/x.jpg`` -> ``images/x.jpg``, ...).
    Components ``..`` are never followed, so the answer is always inside a root. ``want_dir`` True/False
    accepts only a folder/a file. None when nothing matches.
    """
    parts = split_parts(name)
    for k in range(len(parts)):
        rest = parts[k:]
        if ".." in rest:
            continue
        for root in roots:
            cand = os.path.join(os.fspath(root), *rest)
            ok = (os.path.isdir(cand) if want_dir else os.path.isfile(cand) if want_dir is False
                  else os.path.exists(cand))
            if ok:
                return Path(cand)
    return None


def yaml_error(file: str, e: Exception) -> ReadError:
    """A one-line ReadError for a YAML parse error, with its line (PyYAML's own text spans several lines)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or (str(e).splitlines() or ["?"])[0]
    line = int(mark.line) + 1 if mark is not None else None
    return ReadError(file, f"not valid YAML: {problem}", line=line)


def _parse_yaml(text: str, file: str) -> Any:
    """:func:`load_yaml`, its parse error as :func:`yaml_error`'s ReadError."""
    import yaml

    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        raise yaml_error(file, e) from None


def read_names(path: str | Path) -> list[str]:
    """Names from a YAML file (data.yaml), a text file with one name per line (classes.txt, obj.names), or an
    ``obj.data`` (its ``names =`` file, looked up beside it)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ReadError(str(p), f"cannot read class names: {e}") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        names = names_from_yaml(_parse_yaml(text, str(p)), str(p))
        if names is None:
            raise ReadError(str(p), "no 'names' or 'nc' in the file")
        return names
    if p.suffix.lower() == ".data":
        keys = parse_obj_data(text)
        if "names" not in keys:
            if keys.get("classes", "").isdigit():
                return [str(i) for i in range(int(keys["classes"]))]
            raise ReadError(str(p), "no 'names =' line", hint=f"add 'names = obj.names' or give {option('names')}")
        found = locate(keys["names"], [p.parent], want_dir=False)
        if found is None:
            raise ReadError(str(p), f"names file {keys['names']!r} not found beside it")
        names = read_names(found)
        if keys.get("classes", "").isdigit() and int(keys["classes"]) != len(names):
            raise ReadError(str(p), f"classes = {keys['classes']} but {found.name} lists {len(names)} names")
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]


def find_names(folders: Sequence[str | Path]) -> tuple[list[str], Path] | tuple[None, None]:
    """The first names file of :data:`NAME_FILES` in ``folders`` (in order): ``(names, file)``, or
    ``(None, None)`` when there is none. A data.yaml without ``names``/``nc`` is passed over."""
    for folder in folders:
        for fname in NAME_FILES:
            f = Path(folder) / fname
            if not f.is_file():
                continue
            if fname.startswith("data.y"):
                try:
                    text = f.read_text(encoding="utf-8-sig")
                except (OSError, UnicodeDecodeError) as e:
                    raise ReadError(str(f), f"not valid YAML: {e}") from None
                doc = _parse_yaml(text, str(f))
                names = names_from_yaml(doc, str(f)) if isinstance(doc, dict) else None
                if names is None:
                    continue
                return names, f
            return read_names(f), f
    return None, None
