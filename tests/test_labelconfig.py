"""The one Label Studio label-config parser (prelabel.labelconfig), with hand-written configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from prelabel import labelconfig
from prelabel.adapters.base import ReadOptions
from prelabel.adapters.labelstudio import read
from prelabel.converters.reconcile import load_schema
from prelabel.errors import CategoryError, ReadError, UploadError
from prelabel.labelconfig import ConfigLabel, ConfigTag, label_config_for, load, parse
from prelabel.report import Report
from prelabel.upload.labelstudio import parse_label_config

# an image and a video, object controls on both, keypoints out of model_index order, choices, a text area,
# a label with an alias, labels nested in a View inside a control, and lower-case tags
CONFIG = """<View>
  <Image name="img" value="$photo"/>
  <Video name="vid" value="$clip"/>
  <Header value="Pick one"/>
  <RectangleLabels name="box" toName="img">
    <Label value="cat"/>
    <Label value="dog" alias="canine"/>
  </RectangleLabels>
  <polygonlabels name="poly" toName="img, vid">
    <View><Label value="cat"/><Label value="bird"/></View>
  </polygonlabels>
  <KeyPointLabels name="kp" toName="img">
    <Label value="tail" model_index="2"/>
    <Label value="nose" model_index="0"/>
    <Label value="paw"/>
    <Label value="eye" model_index="1"/>
  </KeyPointLabels>
  <VideoRectangle name="track" toName="vid"/>
  <Labels name="vlab" toName="vid"><Label value="car"/><Label value=""/></Labels>
  <Choices name="weather" toName="img"><Choice value="sunny"/><Choice value="rain" alias="wet"/></Choices>
  <TextArea name="note" toName="img"/>
</View>
"""


def test_every_named_tag_in_document_order() -> None:
    cfg = parse(CONFIG, where="cfg.xml")
    assert cfg.source == "cfg.xml"
    assert [(t.tag, t.name, t.to_name) for t in cfg.tags] == [
        ("image", "img", None), ("video", "vid", None),
        ("rectanglelabels", "box", ("img",)), ("polygonlabels", "poly", ("img", "vid")),
        ("keypointlabels", "kp", ("img",)), ("videorectangle", "track", ("vid",)),
        ("labels", "vlab", ("vid",)), ("choices", "weather", ("img",)), ("textarea", "note", ("img",))]
    assert cfg.tags[2].labels == (ConfigLabel("label", "cat"), ConfigLabel("label", "dog", alias="canine"))
    assert cfg.tags[7].labels == (ConfigLabel("choice", "sunny"), ConfigLabel("choice", "rain", alias="wet"))
    assert [(t.name, t.data_key) for t in cfg.objects()] == [("img", "photo"), ("vid", "clip")]
    assert cfg.objects("video") == [ConfigTag("video", "vid", "$clip")]


def test_the_views_each_caller_reads() -> None:
    cfg = parse(CONFIG)
    assert cfg.data_keys() == {"img": "photo", "vid": "clip"}
    # object controls only (not keypoints, not choices); results carry the alias; empty names left out
    assert cfg.category_names() == ["cat", "canine", "bird", "car"]
    assert cfg.category_names(alias=False) == ["cat", "dog", "bird", "car", ""]
    # model_index order, a label without one after those with one
    assert cfg.keypoint_names() == {"kp": ["nose", "eye", "tail", "paw"]}
    assert [c.name for c in cfg.controls("polygonlabels", "labels")] == ["poly", "vlab"]
    assert [c.name for c in cfg.controls(to="vid")] == ["poly", "track", "vlab"]


def test_the_three_callers_read_the_same_config(tmp_path: Path) -> None:
    p = tmp_path / "config.xml"
    p.write_text(CONFIG)
    # the reconciler: the values of the object controls' labels, ids 1..K; an empty value is refused
    with pytest.raises(CategoryError, match="category 5 name must be a non-empty name"):
        load_schema(p)
    p.write_text(CONFIG.replace('<Label value=""/>', ""))
    assert load_schema(p)[["name", "id"]].values.tolist() == [["cat", 1], ["dog", 2], ["bird", 3], ["car", 4]]
    # the target: the image tag, and the labels of each control attached to it
    up = parse_label_config(CONFIG)
    assert (up.image_name, up.image_key) == ("img", "photo")
    assert up.controls == {"rectanglelabels": [("box", ["cat", "dog"])], "polygonlabels": [("poly", ["cat", "bird"])],
                           "keypointlabels": [("kp", ["tail", "nose", "paw", "eye"])]}
    # the reader: the config's category order comes first, even for labels no region uses
    export = tmp_path / "export.json"
    export.write_text('[{"id": 1, "data": {"photo": "/data/upload/1/0a1b2c3d-x.jpg"}, "annotations": [{"id": 1, '
                      '"result": [{"id": "r", "type": "rectanglelabels", "from_name": "box", "to_name": "img", '
                      '"original_width": 100, "original_height": 50, "value": {"x": 10, "y": 10, "width": 20, '
                      '"height": 20, "rectanglelabels": ["bird"]}}]}]}]')
    ds = read(export, options=ReadOptions(extra={"label_config": str(p)}), report=Report())
    assert list(ds.categories["name"]) == ["cat", "canine", "bird", "car"]
    assert ds.images.loc[0, "file_name"] == "x.jpg" and ds.boxes.tolist() == [[10.0, 5.0, 20.0, 10.0]]


def test_a_schema_without_object_labels_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "kp.xml"
    p.write_text('<View><Image name="i" value="$i"/><KeyPointLabels name="k" toName="i"><Label value="nose"/>'
                 '</KeyPointLabels></View>')
    with pytest.raises(CategoryError, match="KeyPointLabels values are keypoint names"):
        load_schema(p)


def test_malformed_xml_names_the_file_and_line(tmp_path: Path) -> None:
    bad = '<View>\n  <Image name="i" value="$i">\n</View>'
    with pytest.raises(ReadError) as e:
        parse(bad, where="bad.xml")
    assert str(e.value) == "bad.xml:3: not a valid label config: mismatched tag: line 3, column 2"
    p = tmp_path / "bad.xml"
    p.write_text(bad)
    with pytest.raises(ReadError) as e:
        load(str(p))
    assert str(e.value) == f"{p}:3: not a valid label config: mismatched tag: line 3, column 2"
    with pytest.raises(ReadError) as e:
        load_schema(p)
    assert str(e.value) == f"{p}:3: not a valid label config: mismatched tag: line 3, column 2"
    with pytest.raises(UploadError) as u:
        parse_label_config(bad)
    assert str(u.value) == "the project's label config is not valid XML: mismatched tag: line 3, column 2"


@pytest.mark.parametrize("xml", [
    '<!DOCTYPE View [<!ENTITY x "cat">]><View><Labels name="l" toName="t"><Label value="&x;"/></Labels></View>',
    '<!DOCTYPE View><View><Image name="i" value="$i"/></View>',                        # a DTD alone
    '<!DOCTYPE View SYSTEM "file:///etc/passwd"><View><Image name="i" value="$i"/></View>',
])
def test_dtds_and_entities_are_refused(xml: str, tmp_path: Path) -> None:
    with pytest.raises(ReadError) as e:
        parse(xml, where="evil.xml")
    assert str(e.value) == "evil.xml: not a valid label config: XML entities/DTD are not allowed"
    assert e.value.hint == "remove the <!DOCTYPE ...> and <!ENTITY ...> declarations"
    with pytest.raises(UploadError) as u:
        parse_label_config(xml)
    assert str(u.value) == "the project's label config is not valid XML: XML entities/DTD are not allowed"


def test_load_text_or_file(tmp_path: Path) -> None:
    p = tmp_path / "c.xml"
    p.write_bytes(b'\xef\xbb\xbf<View><Image name="image" value="$url"/></View>')  # a BOM is fine
    assert load(str(p)).data_keys() == {"image": "url"}
    assert load(str(p)).source == str(p)
    assert load('  <View><Image name="a" value="$b"/></View>').source == "label_config"
    with pytest.raises(ReadError) as e:
        load(str(tmp_path / "no.xml"))
    assert str(e.value).startswith(f"{tmp_path / 'no.xml'}: cannot read the label config: ")


def test_written_configs_read_back() -> None:
    xml = label_config_for(["cat", {"name": "person", "keypoints": ["nose", "eye"]}],
                           kinds=["rectangle", "brush"])
    cfg = parse(xml)
    assert [(c.tag, c.name) for c in cfg.controls()] == [
        ("rectanglelabels", "label"), ("brushlabels", "brush"), ("keypointlabels", "kp")]
    assert cfg.category_names() == ["cat", "person"] and cfg.keypoint_names() == {"kp": ["nose", "eye"]}
    assert labelconfig.parse(label_config_for(['a "b" & <c>'])).category_names() == ['a "b" & <c>']
