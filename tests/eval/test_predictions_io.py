import json

import pandas as pd
import pytest

from llava_hf.eval.predictions_io import append_jsonl, load_predictions, read_jsonl_records, write_jsonl
from tests.eval.mmbench_fixtures import strict_json


def test_truncated_last_line_is_dropped(tmp_path):
    path = tmp_path / "p.jsonl"
    with open(path, "a", encoding="utf-8") as stream:
        append_jsonl(stream, [{"index": 1, "prediction": "A"}, {"index": 2, "prediction": "答案"}])
        stream.write('{"index": 3, "predic')  # crash in the middle of a write
    assert [r["index"] for r in read_jsonl_records(str(path))] == [1, 2]
    assert load_predictions(str(path)) == {1: "A", 2: "答案"}


def test_corrupt_middle_line_names_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"index": 1, "prediction": "A"}\nnot json\n{"index": 2, "prediction": "B"}\n')
    with pytest.raises(ValueError, match="p.jsonl: line 2"):
        read_jsonl_records(str(path))


def test_xlsx_result_files_with_empty_predictions(tmp_path):
    path = tmp_path / "xtuner.xlsx"
    pd.DataFrame({"question": ["q", "r"], "prediction": ["B", None], "index": [1, 1000001]}).to_excel(
        path, index=False)
    assert load_predictions(str(path)) == {1: "B", 1000001: ""}


def test_conflicting_duplicates_are_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(str(path), [{"index": 1, "prediction": "A"}, {"index": 1, "prediction": "B"}])
    with pytest.raises(ValueError, match="index 1 has two"):
        load_predictions(str(path))
    assert json.loads(path.read_text().splitlines()[0]) == {"index": 1, "prediction": "A"}


def test_missing_values_are_written_as_null_and_read_back(tmp_path):
    path = tmp_path / "p.jsonl"
    records = [{"index": 3, "prediction": "I am not sure.", "parsed": float("nan"), "answer": "A", "correct": False},
               {"index": 4, "prediction": "", "parsed": None}]
    write_jsonl(str(path), records[:1])
    with open(path, "a", encoding="utf-8") as stream:
        append_jsonl(stream, records[1:])
    lines = path.read_text().splitlines()
    assert [strict_json(line)["parsed"] for line in lines] == [None, None]
    assert load_predictions(str(path)) == {3: "I am not sure.", 4: ""}


@pytest.mark.parametrize("value", [float("inf"), [1.0, float("nan")]])
def test_other_non_json_numbers_raise_instead_of_writing_invalid_json(tmp_path, value):
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_jsonl(str(tmp_path / "p.jsonl"), [{"index": 1, "prediction": "A", "score": value}])
    assert not (tmp_path / "p.jsonl").exists()


def test_files_written_with_nan_by_earlier_versions_still_read(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"index": 3, "prediction": "I am not sure.", "parsed": NaN}\n')
    assert load_predictions(str(path)) == {3: "I am not sure."}
