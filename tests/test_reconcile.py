"""Category reconciliation: mapping files, schemas of every kind, unknown categories, normalization, ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prelabel.converters.coco import to_coco, validate
from prelabel.converters.reconcile import load_mapping, load_schema, reconcile
from prelabel.errors import CategoryError, ReadError, UsageError
from prelabel.model import Dataset

LS = Path("label_studio/HumanSignal__label-studio-sdk/tests/custom/converter/data")
COCO = Path("coco/openvinotoolkit__datumaro/tests/assets/coco_dataset")


def _ds(categories: list[str], *, table: list[dict[str, Any]] | None = None) -> Dataset:
    n = len(categories)
    return Dataset.build(
        images={"file_name": ["a.jpg"], "width": [100], "height": [100]},
        categories=pd.DataFrame(table) if table else None,
        annotations={"image": [0] * n, "category": categories, "x": [1.0] * n, "y": [1.0] * n,
                     "w": [2.0] * n, "h": [2.0] * n, "src_file": ["src.json"] * n,
                     "src_line": list(range(1, n + 1))})


def _cats(ds: Dataset) -> list[tuple[str, int | None]]:
    return [(str(n), None if pd.isna(i) else int(i)) for n, i in zip(ds.categories["name"], ds.categories["id"],
                                                                      strict=True)]


def _notes(ds: Dataset, code: str) -> list[str]:
    return [d.message for d in ds.report.diagnostics if d.code == code]


# ------------------------------------------------------------------------------------------------ mapping
def test_mapping_merges_renames_and_drops_to_null():
    ds = _ds(["kitty", "cat", "dog", "background", "kitty"])
    out = reconcile(ds, mapping={"kitty": "cat", "background": None})
    assert list(out.annotations["category"]) == ["cat", "cat", "dog", "cat"]
    assert _cats(out) == [("cat", None), ("dog", None)]  # first-seen order, ids left to the writer
    drops = out.report.drops
    assert list(zip(drops["reason"], drops["source"], drops["message"], strict=True)) == [
        ("dropped.mapped_to_null", "src.json:4", "'background' is mapped to null")]
    assert out.report.mapping == [
        {"source": "kitty", "target": "cat", "id": 1, "annotations": 2, "how": "mapped"},
        {"source": "cat", "target": "cat", "id": 1, "annotations": 1, "how": "exact"},
        {"source": "dog", "target": "dog", "id": 2, "annotations": 1, "how": "exact"},
        {"source": "background", "target": None, "id": None, "annotations": 1, "how": "dropped"},
    ]
    coco = to_coco(out)
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    assert [a["category_id"] for a in coco["annotations"]] == [1, 1, 2, 1]


def test_mapping_files_yaml_and_json(tmp_path: Path):
    y = tmp_path / "map.yaml"
    y.write_text("# source: target\nKitty: cat\nbg: null\n'no': negative\n")
    j = tmp_path / "map.json"
    j.write_text(json.dumps({"mapping": {"kitty": "cat", "bg": None}}))
    assert load_mapping(y) == {"Kitty": "cat", "bg": None, "no": "negative"}
    assert load_mapping(j) == {"kitty": "cat", "bg": None}
    # the YAML key 'Kitty' matches the source 'kitty' after normalization, and says so
    out = reconcile(_ds(["kitty", "bg"]), mapping=y)
    assert list(out.annotations["category"]) == ["cat"]
    assert _notes(out, "category.mapped")[0] == "'kitty' renamed to 'cat' by the mapping (key 'Kitty', case)"


def test_bad_mapping_files(tmp_path: Path):
    p = tmp_path / "map.yaml"
    p.write_text("cat: no\n")  # YAML 1.1 reads an unquoted no as false
    with pytest.raises(CategoryError, match="target of 'cat' is the boolean false") as e:
        load_mapping(p)
    assert "quote" in e.value.hint
    p.write_text("- cat\n- dog\n")
    with pytest.raises(CategoryError, match="expected a mapping of source name to target name"):
        load_mapping(p)
    bad = tmp_path / "map.json"
    bad.write_text('{"cat": "dog",\n "x": }')
    with pytest.raises(ReadError, match=r"map.json:2: not valid JSON"):
        load_mapping(bad)


# ------------------------------------------------------------------------------------------------ schemas
def test_schema_from_coco_file_keeps_its_ids(fixtures_dir: Path):
    # datumaro's instances_train.json: categories a (1), b (2), c (4): the gap is kept
    schema = fixtures_dir / COCO / "coco_instances/annotations/instances_train.json"
    out = reconcile(_ds(["c", "a"]), schema=schema)
    assert _cats(out) == [("a", 1), ("b", 2), ("c", 4)]
    coco = to_coco(out)
    assert [a["category_id"] for a in coco["annotations"]] == [4, 1]
    assert validate(coco).ok


def test_schema_from_coco_categories_list_keeps_keypoints(fixtures_dir: Path):
    doc = json.loads((fixtures_dir / "coco/cvat-ai__datumaro/tests/assets/coco_dataset/coco_person_keypoints/"
                                     "annotations/person_keypoints_val.json").read_text())
    schema = load_schema(doc["categories"])
    assert schema is not None
    assert list(schema["name"]) == ["a", "b"] and list(schema["id"]) == [1, 2]
    assert schema.loc[0, "keypoints"] == ["a_1", "a_2", "a_3"] and schema.loc[1, "keypoints"] is None


def test_source_keypoints_win_over_the_schema():
    table = [{"name": "person", "keypoints": ["nose", "eye"], "skeleton": [[1, 2]]}]
    out = reconcile(_ds(["person"], table=table), schema=[{"id": 7, "name": "person"}])
    assert _cats(out) == [("person", 7)]
    assert out.categories.loc[0, "keypoints"] == ["nose", "eye"] and out.categories.loc[0, "skeleton"] == [[1, 2]]


def test_schema_names_list_files(tmp_path: Path):
    txt = tmp_path / "classes.txt"
    txt.write_text("dog\n\ncat\n")
    yml = tmp_path / "names.yaml"
    yml.write_text("- dog\n- cat\n")
    data = tmp_path / "data.yaml"
    data.write_text("path: .\nnames:\n  1: cat\n  0: dog\n")
    js = tmp_path / "names.json"
    js.write_text('["dog", "cat"]')
    for f in (txt, yml, data, js):
        out = reconcile(_ds(["cat"]), schema=f)
        assert _cats(out) == [("dog", 1), ("cat", 2)], f.name


def test_schema_from_labellerr_template(tmp_path: Path):
    questions = [
        {"question_number": 1, "question": "Car", "option_type": "BoundingBox", "options": [{"option_name": "#f00"}]},
        {"question_number": 2, "question": "Weather", "option_type": "radio",
         "options": [{"option_name": "sunny"}, {"option_name": "rain"}]},
        {"question_number": 3, "question": "Road sign", "question_type": "polygon", "options": []},
    ]
    flat = tmp_path / "template.json"
    flat.write_text(json.dumps({"questions": questions}))
    wrapped = tmp_path / "get_template.json"
    wrapped.write_text(json.dumps({"message": "200: Success", "response": {"template_id": "t", "questions": questions}}))
    for f in (flat, wrapped):
        out = reconcile(_ds(["car", "road_sign"]), schema=f)
        # the radio question classifies the image; it is not a category
        assert _cats(out) == [("Car", 1), ("Road sign", 2)], f.name
        assert list(out.annotations["category"]) == ["Car", "Road sign"]
    assert _notes(out, "category.matched") == [
        "'car' matched schema category 'Car' (case)",
        "'road_sign' matched schema category 'Road sign' (case, separators)"]


def test_schema_from_label_studio_config(fixtures_dir: Path):
    xml = fixtures_dir / LS / "test_export_coco/label_config.xml"
    schema = load_schema(xml)
    assert schema is not None
    # keypoint_label1/2 are KeyPointLabels values: keypoint names, not categories
    assert list(schema["name"]) == ["rectangle_label", "polygon_label"]
    assert list(schema["id"]) == [1, 2]


def test_label_studio_config_keypoint_labels_are_not_categories(tmp_path: Path):
    # sample config: cat/dog/car/person under RectangleLabels and PolygonLabels, head/left_hand/right_hand
    # under KeyPointLabels -> 4 categories, not 7
    xml = Path(__file__).resolve().parent.parent / "sample_data/labelstudio/label_config.xml"
    schema = load_schema(xml)
    assert schema is not None
    assert list(schema["name"]) == ["cat", "dog", "car", "person"]
    assert list(schema["id"]) == [1, 2, 3, 4]
    # a value listed under an object control and under KeyPointLabels stays a category, in its object order
    both = tmp_path / "both.xml"
    both.write_text('<View><Image name="i" value="$image"/><KeyPointLabels name="kp" toName="i">'
                    '<Label value="nose"/><Label value="hand"/></KeyPointLabels>'
                    '<RectangleLabels name="r" toName="i"><Label value="hand"/><Label value="face"/>'
                    '</RectangleLabels></View>')
    assert list(load_schema(both)["name"]) == ["hand", "face"]
    only_kp = tmp_path / "kp.xml"
    only_kp.write_text('<View><KeyPointLabels name="kp" toName="i"><Label value="nose"/></KeyPointLabels></View>')
    with pytest.raises(CategoryError, match=r"KeyPointLabels values are keypoint names, not categories"):
        load_schema(only_kp)


def test_label_studio_config_with_a_case_mismatch_in_the_data(fixtures_dir: Path):
    # data_obb.json labels 24 boxes 'Butterfly' and 1 'butterfly'; its config only knows 'butterfly'
    xml = fixtures_dir / LS / "test_export_yolo/label_config_obb.xml"
    out = reconcile(_ds(["Butterfly"] * 24 + ["butterfly"]), schema=xml)
    assert _cats(out) == [("butterfly", 1)]
    assert (out.annotations["category"] == "butterfly").sum() == 25
    assert _notes(out, "category.matched") == ["'Butterfly' matched schema category 'butterfly' (case)"]
    assert [d.source for d in out.report.diagnostics if d.code == "category.matched"] == [str(xml)]
    assert out.report.mapping == [
        {"source": "Butterfly", "target": "butterfly", "id": 1, "annotations": 24, "how": "normalized"},
        {"source": "butterfly", "target": "butterfly", "id": 1, "annotations": 1, "how": "exact"}]


def test_label_studio_config_with_an_entity_is_refused(tmp_path: Path):
    p = tmp_path / "config.xml"
    p.write_text('<!DOCTYPE View [<!ENTITY x "cat">]><View><Labels name="l" toName="t">'
                 '<Label value="&x;"/></Labels></View>')
    with pytest.raises(ReadError) as e:
        load_schema(p)
    assert str(e.value) == f"{p}: not a valid label config: XML entities/DTD are not allowed"


def test_in_memory_schemas():
    df = pd.DataFrame({"name": ["dog", "cat"], "id": [3, 5]})
    assert _cats(reconcile(_ds(["cat"]), schema=df)) == [("dog", 3), ("cat", 5)]
    assert _cats(reconcile(_ds(["cat"]), schema=[{"id": 9, "name": "cat"}])) == [("cat", 9)]
    assert _cats(reconcile(_ds(["cat"]), schema={"response": {"questions": [{"question": "cat"}]}})) == [("cat", 1)]


def test_bad_schemas():
    with pytest.raises(CategoryError, match="category 'cat' is listed twice"):
        load_schema(["cat", "dog", "cat"])
    with pytest.raises(CategoryError, match="category id 2 is used twice"):
        load_schema([{"id": 2, "name": "a"}, {"id": 2, "name": "b"}])
    with pytest.raises(CategoryError, match="category id must be an integer >= 1, got 0"):
        load_schema([{"id": 0, "name": "a"}])
    with pytest.raises(CategoryError, match="the schema has no categories"):
        load_schema([])
    with pytest.raises(UsageError):
        reconcile(_ds(["a"]), schema=["a"], unknown="ignore")


def test_normalization_rules_and_ambiguity():
    out = reconcile(_ds([" traffic_light ", "STOP-sign"]), schema=["traffic light", "stop sign"])
    assert list(out.annotations["category"]) == ["traffic light", "stop sign"]
    assert _notes(out, "category.matched") == [
        "' traffic_light ' matched schema category 'traffic light' (surrounding spaces, separators)",
        "'STOP-sign' matched schema category 'stop sign' (case, separators)"]
    with pytest.raises(CategoryError, match="'CAR' matches several schema categories: 'Car', 'car'"):
        reconcile(_ds(["CAR"]), schema=["Car", "car"])
    # an exact match wins over normalized ones
    assert list(reconcile(_ds(["car"]), schema=["Car", "car"]).annotations["category"]) == ["car"]


# ------------------------------------------------------------------------------------------------ unknown
def test_unknown_error_names_them_and_the_closest_schema_names():
    ds = _ds(["cta", "cta", "zebra", "cat", "kitty"])
    with pytest.raises(CategoryError) as e:
        reconcile(ds, schema=["cat", "dog"], mapping={"kitty": "kat"})
    assert str(e.value) == ("3 categories are not in the schema: 'cta' (2 annotations; closest: 'cat'), "
                            "'zebra' (1 annotation; no close match), "
                            "'kat' (mapped from 'kitty'; 1 annotation; closest: 'cat')")
    assert e.value.hint == ("map them with mapping=FILE (source: target, or null to drop), or pass unknown='drop' "
                            "to drop their annotations (unknown='keep' to keep them)")  # Python names in Python


def test_unknown_drop():
    out = reconcile(_ds(["cta", "cat", "zebra"]), schema=["dog", "cat"], unknown="drop")
    assert list(out.annotations["category"]) == ["cat"]
    assert _cats(out) == [("dog", 1), ("cat", 2)]
    d = out.report.drops
    assert list(zip(d["reason"], d["source"], d["message"], strict=True)) == [
        ("dropped.unknown_category", "src.json:1", "'cta' is not in the schema"),
        ("dropped.unknown_category", "src.json:3", "'zebra' is not in the schema")]
    assert [m["how"] for m in out.report.mapping] == ["unknown-dropped", "exact", "unknown-dropped"]


def test_unknown_keep_appends_after_the_schema_with_new_ids():
    out = reconcile(_ds(["zebra", "cat", "emu"]), schema=[{"id": 3, "name": "cat"}, {"id": 10, "name": "dog"}],
                    unknown="keep")
    assert _cats(out) == [("cat", 3), ("dog", 10), ("zebra", 11), ("emu", 12)]
    assert [a["category_id"] for a in to_coco(out)["annotations"]] == [11, 3, 12]
    assert [m["how"] for m in out.report.mapping] == ["unknown-kept", "exact", "unknown-kept"]


def test_unused_source_categories_outside_the_schema_are_left_out():
    # a COCO source that defines 'plane' but never uses it: no error, an info note
    table = [{"name": "cat"}, {"name": "plane"}]
    out = reconcile(_ds(["cat"], table=table), schema=["cat"])
    assert _cats(out) == [("cat", 1)]
    assert _notes(out, "category.unused") == [
        "source category 'plane' has no annotations and is not in the schema: left out"]
    assert out.report.problems() == []  # info only: --strict does not fail on it


# ------------------------------------------------------------------------------------------------ concat property
POOL = ["cat", "Cat", "dog", "kitty", "bird", "car"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.sampled_from(POOL), min_size=1, max_size=6), min_size=1, max_size=4),
       st.dictionaries(st.sampled_from(POOL), st.sampled_from(["cat", "dog", "vehicle", None]), max_size=4),
       st.booleans())
def test_property_one_target_name_gets_one_id_across_merged_sources(sources, mapping, with_schema):
    parts = []
    names: list[str] = []
    for i, cats in enumerate(sources):
        part = _ds(cats)
        part.images["file_name"] = [f"part{i}.jpg"]  # one picture per source (one name, one image)
        parts.append(part)
        names.extend(cats)
    merged = Dataset.concat(parts)
    merged.annotations["src_line"] = range(len(names))  # row -> its source name
    schema = ["vehicle", "dog", "cat", "bird", "kitty", "car"] if with_schema else None
    out = reconcile(merged, mapping=mapping, schema=schema, unknown="keep")
    coco = to_coco(out)
    assert validate(coco).ok
    order = out.annotations["src_line"].tolist()
    ids_of_target: dict[str, set[int]] = {}
    for a, src_row in zip(coco["annotations"], order, strict=True):
        target = next(m["target"] for m in out.report.mapping if m["source"] == names[src_row])
        ids_of_target.setdefault(target, set()).add(a["category_id"])
    assert all(len(v) == 1 for v in ids_of_target.values())
    assert len({next(iter(v)) for v in ids_of_target.values()}) == len(ids_of_target)
    # the report's mapping agrees with what was written
    for m in out.report.mapping:
        if m["target"] is not None and m["annotations"]:
            assert ids_of_target[m["target"]] == {m["id"]}
