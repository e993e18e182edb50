import json

import pytest

from llava_hf.data.errors import DataError
from llava_hf.data.sources import read_samples, sample_id, sample_images

SAMPLE = {"id": 7, "image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]}


def test_json_and_jsonl_give_the_same_records(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([SAMPLE, SAMPLE]))
    (tmp_path / "d.jsonl").write_text(json.dumps(SAMPLE) + "\n\n" + json.dumps(SAMPLE) + "\n")
    assert read_samples(str(tmp_path / "d.json")) == read_samples(str(tmp_path / "d.jsonl")) == [SAMPLE, SAMPLE]
    assert sample_id(SAMPLE) == "7"  # integer ids become strings


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n{"id": 1},\n{"id": 2,,}\n]')
    with pytest.raises(DataError, match=r"bad.json: invalid JSON at line 3"):
        read_samples(str(path))


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(SAMPLE) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl: invalid JSON on line 2"):
        read_samples(str(path))


@pytest.mark.parametrize("name, content, message", [
    ("d.json", '{"id": 1}', "expected a JSON list of samples, got dict"),
    ("d.csv", "a,b", "unsupported extension '.csv'"),
])
def test_wrong_shapes(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        read_samples(str(tmp_path / name))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_samples(str(tmp_path / "nope.json"))


def test_image_is_one_path_or_a_list_of_paths():
    assert sample_images({"conversations": []}) == []
    assert sample_images({"image": "a.jpg"}) == ["a.jpg"]
    assert sample_images({"image": ["a.jpg", "b.jpg"]}) == ["a.jpg", "b.jpg"]  # LLaVA-OneVision's interleaved form
    for bad in ("", ["a.jpg", ""], ["a.jpg", None], {"path": "a.jpg"}, 3):
        with pytest.raises(ValueError, match="'image' must be a relative path or a list of them"):
            sample_images({"image": bad})
