"""Label Studio labeling configs (the ``<View>`` XML): parsed in one place, and written.

Three rooms read a config: the Label Studio reader (category order, the data key of each image tag, the
keypoint names of each ``KeyPointLabels``, the ``Choices`` controls), the reconciler (a config as a target
schema: the labels of the object controls) and the Label Studio target (the ``Image`` tag and the labels of
each control attached to it). They all read :func:`parse` (or :func:`load`, text or a file) and pick from its
one record, :class:`LabelStudioConfig`.

The rules, one set for all:

- The XML is parsed with defusedxml; a DTD or an entity declaration is refused (``XML entities/DTD are not
  allowed``), as is malformed XML; either raises :class:`~prelabel.errors.ReadError` naming the file (or
  ``label_config`` for a config given as text) and, for malformed XML, the line.
- Every element with a ``name`` is a tag, in document order. One with a ``toName`` is a **control**
  (``RectangleLabels``, ``PolygonLabels``, ``KeyPointLabels``, ``BrushLabels``, ``EllipseLabels``,
  ``Labels``, ``Choices``, ``TextArea``...), its ``toName`` split at commas; one without is an **object tag**
  (``Image``, ``Video``, ``Text``...), whose ``value="$key"`` names the task's data key.
- Tag names are compared in lower case (``rectanglelabels``), as Label Studio does.
- A control's labels are its ``Label`` and ``Choice`` descendants, in document order, each with its
  ``value``, ``alias`` and ``model_index`` as written. A result carries the alias when there is one, else the
  value (:attr:`ConfigLabel.name`).

Example:
    >>> cfg = parse('<View><Image name="img" value="$photo"/>'
    ...     '<RectangleLabels name="box" toName="img"><Label value="cat"/><Label value="dog" alias="d"/>'
    ...     '</RectangleLabels><Choices name="q" toName="img"><Choice value="day"/></Choices></View>',
    ...     where="config.xml")
    >>> cfg.data_keys(), cfg.category_names(), cfg.category_names(alias=False)
    ({'img': 'photo'}, ['cat', 'd'], ['cat', 'dog'])
    >>> [(c.tag, c.name, c.to_name) for c in cfg.controls()]
    [('rectanglelabels', 'box', ('img',)), ('choices', 'q', ('img',))]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import quoteattr

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from .errors import ReadError, UsageError

__all__ = [
    "CONTROL_TAGS",
    "INVALID",
    "OBJECT_CONTROLS",
    "REGION_TYPES",
    "ConfigLabel",
    "ConfigTag",
    "LabelStudioConfig",
    "label_config_for",
    "load",
    "parse",
]

# the controls whose labels are object categories (KeyPointLabels values name keypoints, not objects)
OBJECT_CONTROLS = frozenset({"rectanglelabels", "polygonlabels", "ellipselabels", "brushlabels", "labels"})
# the region controls prelabel writes, lower-case result type -> the tag as Label Studio spells it
CONTROL_TAGS = {"rectanglelabels": "RectangleLabels", "polygonlabels": "PolygonLabels",
                "brushlabels": "BrushLabels", "keypointlabels": "KeyPointLabels"}
REGION_TYPES = ("rectanglelabels", "polygonlabels", "brushlabels")
DTD_MESSAGE = "XML entities/DTD are not allowed"
INVALID = "not a valid label config: "  # how every parse error's reason starts
_KIND_TYPE = {"rectangle": "rectanglelabels", "polygon": "polygonlabels", "brush": "brushlabels",
              "keypoints": "keypointlabels"}
_CONTROL_NAMES = {"rectanglelabels": "label", "polygonlabels": "polygon", "brushlabels": "brush",
                  "keypointlabels": "kp"}
_LABEL_TAGS = ("label", "choice")
_LAST = 1 << 30  # the model_index of a keypoint label without one: after those that have one


@dataclass(frozen=True)
class ConfigLabel:
    """One ``<Label>`` or ``<Choice>`` of a control, its attributes as written (None when absent)."""

    tag: str                 # "label" or "choice"
    value: str | None
    alias: str | None = None
    model_index: str | None = None

    @property
    def name(self) -> str:
        """The name a result carries: the alias, else the value ("" when neither is set)."""
        return self.alias or self.value or ""


@dataclass(frozen=True)
class ConfigTag:
    """One named element of the config: a control (``to_name`` set) or an object tag (``to_name`` None)."""

    tag: str                              # lower case: "image", "rectanglelabels", ...
    name: str
    value: str | None = None              # as written: "$image"
    to_name: tuple[str, ...] | None = None
    labels: tuple[ConfigLabel, ...] = ()

    @property
    def is_control(self) -> bool:
        return self.to_name is not None

    @property
    def data_key(self) -> str | None:
        """The task data key of an object tag (``value="$image"`` gives ``image``), else None."""
        if self.to_name is None and self.value is not None and self.value.startswith("$"):
            return self.value[1:]
        return None


@dataclass(frozen=True)
class LabelStudioConfig:
    """A parsed label config: its named tags in document order, and where it came from."""

    source: str
    tags: tuple[ConfigTag, ...]

    def objects(self, tag: str | None = None) -> list[ConfigTag]:
        """The object tags (no ``toName``), only those of ``tag`` (lower case) when given."""
        return [t for t in self.tags if not t.is_control and (tag is None or t.tag == tag)]

    def controls(self, *tags: str, to: str | None = None) -> list[ConfigTag]:
        """The controls (of the lower-case ``tags`` when given, attached to object ``to`` when given)."""
        return [t for t in self.tags if t.to_name is not None and (not tags or t.tag in tags)
                and (to is None or to in t.to_name)]

    def data_keys(self) -> dict[str, str]:
        """Object tag name -> the task data key it shows (tags whose value is ``$key``)."""
        return {t.name: key for t in self.tags if (key := t.data_key) is not None}

    def category_names(self, *, alias: bool = True) -> list[str]:
        """The labels of the object controls (:data:`OBJECT_CONTROLS`), in config order, each once.

        ``alias=True``: the names results carry (alias, else value; empty ones left out); ``alias=False``:
        the ``value`` of each ``<Label>`` that has one.
        """
        out: dict[str, None] = {}
        for c in self.controls(*OBJECT_CONTROLS):
            if alias:
                out.update(dict.fromkeys(n for lab in c.labels if (n := lab.name)))
            else:
                out.update(dict.fromkeys(lab.value for lab in c.labels
                                         if lab.tag == "label" and lab.value is not None))
        return list(out)

    def keypoint_names(self) -> dict[str, list[str]]:
        """``KeyPointLabels`` control name -> its label names, in ``model_index`` order, then config order."""
        out: dict[str, list[str]] = {}
        for c in self.controls("keypointlabels"):
            labs = [(_index(lab.model_index), k, lab.name) for k, lab in enumerate(c.labels) if lab.name]
            out[c.name] = [name for _, _, name in sorted(labs)]
        return out


def _index(model_index: str | None) -> int:
    return int(model_index) if model_index is not None and model_index.isdecimal() else _LAST


def parse(text: str, *, where: str = "label_config") -> LabelStudioConfig:
    """Parse a label config; ``where`` (a file name, or ``label_config``) names it in errors.

    Raises :class:`~prelabel.errors.ReadError` for malformed XML and for a DTD or entity declaration.

    >>> cfg = parse('<View><Image name="i" value="$img"/><KeyPointLabels name="kp" toName="i">'
    ...             '<Label value="tail" model_index="1"/><Label value="nose" model_index="0"/></KeyPointLabels>'
    ...             '</View>')
    >>> cfg.keypoint_names(), cfg.objects("image")[0].data_key
    ({'kp': ['nose', 'tail']}, 'img')
    >>> parse('<!DOCTYPE v [<!ENTITY a "b">]><View/>', where="c.xml")
    Traceback (most recent call last):
    ...
    prelabel.errors.ReadError: c.xml: not a valid label config: XML entities/DTD are not allowed
    """
    try:
        root = ElementTree.fromstring(text, forbid_dtd=True)
    except DefusedXmlException:
        raise ReadError(where, f"{INVALID}{DTD_MESSAGE}",
                        hint="remove the <!DOCTYPE ...> and <!ENTITY ...> declarations") from None
    except ParseError as e:
        raise ReadError(where, f"{INVALID}{e}",
                        line=e.position[0] if e.position else None) from None
    except ValueError as e:  # an encoding expat cannot read
        raise ReadError(where, f"{INVALID}{e}") from None
    tags: list[ConfigTag] = []
    for el in root.iter():
        name = el.get("name")
        if not name:
            continue
        to = el.get("toName")
        labels = tuple(ConfigLabel(tag=str(c.tag).lower(), value=c.get("value"), alias=c.get("alias"),
                                   model_index=c.get("model_index"))
                       for c in el.iter() if str(c.tag).lower() in _LABEL_TAGS) if to is not None else ()
        tags.append(ConfigTag(tag=str(el.tag).lower(), name=name, value=el.get("value"),
                              to_name=None if to is None else tuple(t.strip() for t in to.split(",")),
                              labels=labels))
    return LabelStudioConfig(source=where, tags=tuple(tags))


def load(spec: str | Path) -> LabelStudioConfig:
    """A label config given as XML text (it starts with ``<``) or as the path of a file (UTF-8, BOM allowed).

    >>> load('<View><Image name="image" value="$image"/></View>').data_keys()
    {'image': 'image'}
    """
    text = str(spec)
    if text.lstrip().startswith("<"):
        return parse(text)
    try:
        content = Path(text).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ReadError(text, f"cannot read the label config: {e}") from None
    return parse(content, where=text)


def label_config_for(categories: Sequence[str | Mapping[str, Any]], *,
                     kinds: Iterable[str] = ("rectangle",)) -> str:
    """A label config with one control per kind (``rectangle``, ``polygon``, ``brush``, ``keypoints``).

    ``categories`` are names or COCO category dicts; the KeyPointLabels control (``kp``) holds the keypoint
    names of the categories and is added whenever a category has keypoints.

    >>> print(label_config_for(["cat", {"name": "person", "keypoints": ["nose"]}], kinds=["rectangle"]))
    <View>
      <Image name="image" value="$image"/>
      <RectangleLabels name="label" toName="image">
        <Label value="cat"/>
        <Label value="person"/>
      </RectangleLabels>
      <KeyPointLabels name="kp" toName="image">
        <Label value="nose"/>
      </KeyPointLabels>
    </View>
    """
    kinds = list(kinds)
    names: list[str] = []
    kp_names: dict[str, None] = {}
    for c in categories:
        if isinstance(c, Mapping):
            names.append(str(c["name"]))
            kp_names.update(dict.fromkeys(str(k) for k in c.get("keypoints") or []))
        else:
            names.append(str(c))
    types = [_KIND_TYPE[k] for k in kinds if k in _KIND_TYPE and k != "keypoints"]
    unknown = [k for k in kinds if k not in _KIND_TYPE]
    if unknown:
        raise UsageError(f"unknown label config kind(s): {', '.join(unknown)}; use {', '.join(_KIND_TYPE)}")
    if "keypoints" in kinds and not kp_names:
        kp_names = dict.fromkeys(names)
    lines = ["<View>", '  <Image name="image" value="$image"/>']

    def control(rtype: str, labels: Iterable[str]) -> None:
        tag = CONTROL_TAGS[rtype]
        lines.append(f'  <{tag} name="{_CONTROL_NAMES[rtype]}" toName="image">')
        lines.extend(f"    <Label value={quoteattr(v)}/>" for v in labels)
        lines.append(f"  </{tag}>")

    for rtype in REGION_TYPES:
        if rtype in types:
            control(rtype, dict.fromkeys(names))
    if kp_names:
        control("keypointlabels", kp_names)
    lines.append("</View>")
    return "\n".join(lines)
