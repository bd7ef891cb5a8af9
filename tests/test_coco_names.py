"""The quick checks of file names agree with the full rule: the validator's one-regex check never accepts a name
that paths.why_unsafe rejects, and safe_relative's shortcut for plain names gives what its full rule gives."""

from __future__ import annotations

import posixpath
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from prelabel.converters.coco_validate import names_plainly_safe
from prelabel.paths import safe_relative, why_unsafe

ALPHABET = st.sampled_from(list("ab./\\:\x00\n é") + ["..", "C:", "//"])


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.lists(ALPHABET, max_size=8).map("".join), max_size=4))
def test_plain_names_are_never_unsafe(names: list[str]) -> None:
    if names_plainly_safe(names):
        assert all(why_unsafe(n) is None for n in names)


def test_examples() -> None:
    assert names_plainly_safe(["a.jpg", "dir/b c.png", "é/ü.jpg"])
    for bad in (["../a.jpg"], ["a/../../b"], ["/etc/passwd"], ["C:/x.jpg"], ["a\x00.jpg"], [""], ["a\\b"]):
        assert not names_plainly_safe(bad), bad
        assert why_unsafe(bad[0]) is not None or bad == ["a\\b"]


def _full_rule(name: str) -> str | None:
    """safe_relative as its docstring states it, without the shortcut: None when unsafe, else the NFC,
    slash-separated, normalized form."""
    if why_unsafe(name) is not None:
        return None
    norm = unicodedata.normalize("NFC", name.replace("\\", "/"))
    return posixpath.normpath("/".join(p for p in norm.split("/") if p not in ("", ".")))


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(list("ab.:/\\\x00\t é") + ["..", "C:", "e\u0301"]), max_size=6).map("".join))
def test_safe_relative_shortcut_is_the_full_rule(name: str) -> None:
    assert safe_relative(name) == _full_rule(name)


def test_safe_relative_examples() -> None:
    # by hand: a plain name is itself; the rest as the module docstring says
    assert [safe_relative(n) for n in ("a.jpg", "...", "a b", "x\\y", "./a", "e\u0301.jpg", "c:x", "..", "")] == [
        "a.jpg", "...", "a b", "x/y", "a", "\u00e9.jpg", None, None, None]
