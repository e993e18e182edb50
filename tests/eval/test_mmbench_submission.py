import pandas as pd

from llava_hf.eval.mmbench_data import load_mmbench_tsv
from llava_hf.eval.mmbench_submission import EXCEL_CELL_LIMIT, write_submission


def test_submission_roundtrip(test_tsv, tmp_path):
    data = load_mmbench_tsv(test_tsv)
    predictions = {i: "B" for i in data.frame["index"]}
    predictions[1] = "x" * 40_000
    predictions[2] = "A\x00\x07 bell"
    predictions[3] = "=1+1"
    predictions[4] = ""
    path = tmp_path / "out" / "mmbench_result.xlsx"
    write_submission(data, predictions, str(path))
    sheet = pd.read_excel(path)
    assert list(sheet.columns) == ["index", "question", "hint", "A", "B", "C", "D", "prediction", "category",
                                   "l2-category", "split"]
    assert sheet["index"].dtype == "int64" and len(sheet) == len(data)
    rows = sheet.set_index("index")
    assert len(rows.loc[1, "prediction"]) == EXCEL_CELL_LIMIT
    assert rows.loc[2, "prediction"] == "A bell"
    assert rows.loc[3, "prediction"] == "=1+1"  # text, not a formula
    assert pd.isna(rows.loc[4, "prediction"]) and pd.isna(rows.loc[3, "C"])  # empty cells, never "nan"
    assert rows.loc[4, "question"] == "图中是什么季节？"
    assert not list(tmp_path.joinpath("out").glob(".*"))  # no temporary file left


def test_dev_submission_has_answer(dev_tsv, tmp_path):
    data = load_mmbench_tsv(dev_tsv)
    write_submission(data, {i: "A" for i in data.frame["index"]}, str(tmp_path / "r.xlsx"))
    sheet = pd.read_excel(tmp_path / "r.xlsx")
    assert sheet.columns[-1] == "answer" and sheet["answer"].tolist() == data.frame["answer"].tolist()
