"""A COCO shard parsed a piece of its annotations at a time (prelabel.upload.shardjson): the same document as
orjson.loads, and orjson.loads itself whenever a cut could be wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from prelabel.upload import shardjson


class _Counting:
    """orjson with its parses counted: the sizes of the buffers parsed, in order."""

    JSONDecodeError = orjson.JSONDecodeError

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def loads(self, data: bytes) -> Any:
        self.sizes.append(len(data))
        return orjson.loads(data)

    def dumps(self, v: Any) -> bytes:
        return orjson.dumps(v)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counting = _Counting()
    monkeypatch.setattr(shardjson, "orjson", counting)
    return counting.sizes


def _ann(i: int) -> dict[str, Any]:
    # a nested object, and every seventh a string that holds the cut pattern
    return {"id": i, "image_id": 1 + i % 3, "category_id": 1, "bbox": [i + 0.1, 2.5, 3.0, 4.0], "iscrowd": 0,
            "segmentation": {"size": [4, 6], "counts": "0Q1"}, "area": 12.0,
            "attributes": {"note": '},{"id": 9}' if i % 7 == 0 else "ok"}}


DOC = {"info": {"description": "x"}, "images": [{"id": k, "file_name": f"{k}.jpg", "width": 6, "height": 4}
                                                for k in (1, 2, 3)],
       "annotations": [_ann(i) for i in range(1, 41)], "categories": [{"id": 1, "name": "cat"}]}


def test_pieces_give_the_same_document(parses: list[int]) -> None:
    data = orjson.dumps(DOC)
    out = shardjson.loads(data, piece=500)
    assert out == DOC and list(out) == list(DOC) and [a["id"] for a in out["annotations"]] == list(range(1, 41))
    # the array was parsed in pieces (no parse of the whole document), each about 500 bytes
    assert len(parses) > 5 and max(parses) < len(data) // 3
    assert sum(parses) < len(data) + 100 * len(parses)


def test_nested_lists_of_objects_are_cut_between_annotations(parses: list[int]) -> None:
    # every annotation holds "},{" at depth 3: those cuts fail to parse and the next boundary is taken
    doc = {**DOC, "annotations": [{**a, "parts": [{"id": 1}, {"id": 2}, {"id": 3}]} for a in DOC["annotations"]]}
    data = orjson.dumps(doc)
    assert shardjson.loads(data, piece=500) == doc
    assert len(data) not in parses and len(parses) > 5


def test_indented_json_and_annotations_before_other_keys(parses: list[int]) -> None:
    doc = {"annotations": DOC["annotations"], "images": DOC["images"], "categories": DOC["categories"]}
    data = json.dumps(doc, indent=2).encode()
    out = shardjson.loads(data, piece=600)
    assert out == doc and list(out) == ["annotations", "images", "categories"]
    assert len(parses) > 5 and len(data) not in parses


def test_small_documents_are_parsed_whole(parses: list[int]) -> None:
    data = orjson.dumps(DOC)
    assert shardjson.loads(data) == DOC
    assert parses == [len(data)]


def test_the_key_twice_falls_back_to_one_parse(parses: list[int]) -> None:
    doc = {"info": {"annotations": [{"id": 1}, {"id": 2}]}, **{k: v for k, v in DOC.items() if k != "info"}}
    data = orjson.dumps(doc)
    assert shardjson.loads(data, piece=300) == doc
    assert parses == [len(data)]


def test_a_nested_array_under_an_escaped_top_level_key_is_not_taken_for_it(parses: list[int]) -> None:
    # the top-level key is spelled with an escape: the only plain '"annotations":[' is inside "info"
    inner = [{"id": i, "v": "x" * 20} for i in range(30)]
    raw = (b'{"info": {"annotations": ' + orjson.dumps(inner) + b'}, "annot\\u0061tions": '
           + orjson.dumps(DOC["annotations"]) + b"}")
    want = orjson.loads(raw)
    assert shardjson.loads(raw, piece=100) == want
    assert parses[-1] == len(raw)   # the pieces were thrown away, the document parsed whole


def test_invalid_json_raises_orjsons_error() -> None:
    data = orjson.dumps(DOC)[:-30]
    with pytest.raises(orjson.JSONDecodeError) as e:
        shardjson.loads(data, piece=300)
    with pytest.raises(orjson.JSONDecodeError) as whole:
        orjson.loads(data)
    assert str(e.value) == str(whole.value)


def test_a_cut_inside_a_string_is_refused_by_the_parse(parses: list[int]) -> None:
    # one long string full of the separator: every cut found inside it fails to parse, then one whole parse
    doc = {"annotations": [{"id": 1, "note": '},{' * 400}, {"id": 2}], "images": []}
    data = orjson.dumps(doc)
    assert shardjson.loads(data, piece=100) == doc
    assert len(parses) == 9 and parses[-1] == len(data) and max(parses[:-1]) < 200   # 8 tries, then whole


def test_a_written_shard(tmp_path: Path) -> None:
    from prelabel.converters import coco as coco_io

    p = tmp_path / "shard.json"
    coco_io.write_json_atomic(p, orjson.dumps(DOC, option=orjson.OPT_SERIALIZE_NUMPY))
    assert shardjson.loads(p.read_bytes(), piece=256) == orjson.loads(p.read_bytes())
