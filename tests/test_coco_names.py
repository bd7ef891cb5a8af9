"""The validator's one-regex check of file names never accepts a name that paths.why_unsafe rejects."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from prelabel.converters.coco_validate import names_plainly_safe
from prelabel.paths import why_unsafe

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
