import pytest

from llava_hf.eval.mmbench_data import load_mmbench_tsv
from llava_hf.eval.mmbench_scoring import format_report, score_mmbench
from tests.eval.mmbench_fixtures import HANDMADE_PREDICTIONS


def test_handmade_scores(dev_tsv):
    result, matches = score_mmbench(load_mmbench_tsv(dev_tsv), HANDMADE_PREDICTIONS)
    circular, vanilla = result["circular"], result["vanilla"]
    assert circular["overall"] == pytest.approx(50.0)  # questions 2 and 4 of 4
    assert circular["l2-category"] == pytest.approx(
        {"coarse_perception": 50.0, "finegrained_perception (instance-level)": 50.0})
    assert circular["category"] == pytest.approx({"celebrity_recognition": 0.0, "image_scene": 50.0, "ocr": 100.0})
    assert vanilla["overall"] == pytest.approx(100 * 11 / 13)
    assert vanilla["pass0"] == pytest.approx(75.0)  # rows 1, 2, 4 right, row 3 unparsable
    assert vanilla["category"] == pytest.approx({"celebrity_recognition": 50.0, "image_scene": 87.5, "ocr": 100.0})
    assert vanilla["l2-category"] == pytest.approx(
        {"coarse_perception": 87.5, "finegrained_perception (instance-level)": 80.0})
    assert (result["n_questions"], result["n_rows"], result["unparsable"], result["refusals"]) == (4, 13, 1, 0)
    assert matches.set_index("index").loc[2000001, "parsed"] == "A"
    report = format_report(result)
    assert "FP-S" in report and "50.0" in report and "1 unparsable" in report


def test_oracle_scores_100_and_always_a_scores_0(dev_tsv):
    data = load_mmbench_tsv(dev_tsv)
    answers = dict(zip(data.frame["index"], data.frame["answer"]))
    assert score_mmbench(data, answers)[0]["circular"]["overall"] == 100.0
    always_a, _ = score_mmbench(data, {i: "A" for i in answers})
    assert always_a["circular"]["overall"] == 0.0  # the right letter moves between passes
    assert always_a["vanilla"]["overall"] == pytest.approx(100 * 4 / 13)  # one pass per question has GT "A"


def test_refusal_counts_as_wrong(dev_tsv):
    data = load_mmbench_tsv(dev_tsv)
    answers = dict(zip(data.frame["index"], data.frame["answer"]))
    result, _ = score_mmbench(data, {**answers, 3: "Cannot determine the answer"})
    assert result["refusals"] == 1 and result["unparsable"] == 0
    assert result["circular"]["category"]["celebrity_recognition"] == 0.0
    assert result["circular"]["overall"] == 75.0


def test_incomplete_or_foreign_predictions_are_refused(dev_tsv, test_tsv):
    data = load_mmbench_tsv(dev_tsv)
    with pytest.raises(ValueError, match="1 of 13 rows .* no prediction .*3000004"):
        score_mmbench(data, {i: "A" for i in HANDMADE_PREDICTIONS if i != 3000004})
    with pytest.raises(ValueError, match="not in"):
        score_mmbench(data, {**HANDMADE_PREDICTIONS, 5: "A"})
    with pytest.raises(ValueError, match="no answers"):
        score_mmbench(load_mmbench_tsv(test_tsv), HANDMADE_PREDICTIONS)
