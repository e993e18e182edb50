"""LLaVA-1.5-13B's real MMBench-dev predictions rescore to its published score through `examples/mmbench.py`.

LLaVA's MODEL_ZOO lists 67.7 for LLaVA-v1.5-13B on MMBench dev, computed by the MMBench server on
`mmbench_dev_20230712` (4377 rows, 1176 questions), the file these predictions were made for. Every prediction
is a bare letter, so the answer matcher cannot matter: the number checks the CircularEval grouping (a question
counts only if all its passes are right) and the index/answer bookkeeping. The predictions file carries the
questions, options and answers but no images or categories; the test writes the TSV from it with MMBench's real
column header, a stand-in image on pass 0 and VLMEvalKit-style image references on the other passes.
"""

import json
import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from llava_hf.eval.mmbench_data import CIRCULAR_OFFSET, encode_image
from tests.real.conftest import real_path


EXAMPLE = Path(__file__).parents[2] / "examples" / "mmbench.py"
PUBLISHED_DEV_SCORE = 67.7  # LLaVA docs/MODEL_ZOO.md, LLaVA-v1.5-13B, MMBench (dev, mmbench_dev_20230712)


def write_dev_tsv(predictions: pd.DataFrame, path: Path) -> None:
    header = real_path("mmbench", "MMBench_DEV_EN.REAL_HEADER.tsv").read_text().rstrip("\n").split("\t")
    frame = predictions.drop(columns=["prediction"]).reindex(columns=header)
    image = encode_image(Image.new("RGB", (8, 8), (128, 128, 128)))
    frame["image"] = [image if i < CIRCULAR_OFFSET else str(i % CIRCULAR_OFFSET) for i in frame["index"]]
    frame.to_csv(path, sep="\t", index=False)


def test_llava_13b_predictions_rescore_to_the_published_dev_score(tmp_path, monkeypatch):
    xlsx = real_path("mmbench", "mmbench_dev_20230712_llava-v1.5-13b.xlsx")
    predictions = pd.read_excel(xlsx, keep_default_na=False, na_values=[""])
    assert len(predictions) == 4377
    write_dev_tsv(predictions, tmp_path / "mmbench_dev_20230712.tsv")
    argv = [str(EXAMPLE), "--predictions", str(xlsx), "--data_path", str(tmp_path / "mmbench_dev_20230712.tsv"),
            "--work_dir", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert exit_info.value.code == 0
    result = json.loads((tmp_path / "out" / "mmbench_result.json").read_text())
    assert (result["n_questions"], result["n_rows"], result["unparsable"]) == (1176, 4377, 0)
    assert result["circular"]["overall"] == pytest.approx(100 * 796 / 1176)
    assert round(result["circular"]["overall"], 1) == PUBLISHED_DEV_SCORE
