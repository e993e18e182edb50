"""CircularEval and vanilla accuracy for MMBench dev files, overall / per L2 ability / per leaf category.

CircularEval (the headline, as VLMEvalKit `mcq_circular_eval` under exact matching): group rows by
`index % 1e6`; a question is a hit only if every pass is parsed to its ground-truth letter, so an unparsable
pass makes the question wrong. Accuracies are means over questions (not rows), in percent. Category and
l2-category come from the pass-0 row. Vanilla accuracies are the plain per-row means (all rows, and pass 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from .answer_matching import MATCHER_NAME, REFUSAL, can_infer
from .mmbench_data import CIRCULAR_OFFSET, MMBenchData

L2_ABBREVIATIONS = {
    "coarse_perception": "CP",
    "finegrained_perception (instance-level)": "FP-S",
    "finegrained_perception (cross-instance)": "FP-C",
    "attribute_reasoning": "AR",
    "relation_reasoning": "RR",
    "logic_reasoning": "LR",
}
GROUP_COLUMNS = ("l2-category", "category")


def check_prediction_coverage(data: MMBenchData, predictions: Mapping[int, str], source: str) -> None:
    """Scoring needs exactly the TSV's rows: a shard or another file's predictions must never be scored."""
    expected = set(data.frame["index"].tolist())
    missing = sorted(expected - set(predictions))
    extra = sorted(set(predictions) - expected)
    if missing:
        raise ValueError(f"{source}: {len(missing)} of {len(expected)} rows of {data.path} have no prediction "
                         f"(e.g. index {missing[:5]})")
    if extra:
        raise ValueError(f"{source}: {len(extra)} predictions have indices that are not in {data.path} "
                         f"(e.g. {extra[:5]}); were they made for another TSV?")


def match_predictions(data: MMBenchData, predictions: Mapping[int, str]) -> pd.DataFrame:
    """One row per TSV row: index, prediction, parsed letter (None if unparsable), answer, correct."""
    frame = data.frame
    records = []
    for position in range(len(frame)):
        index = int(frame["index"].iat[position])
        prediction = predictions[index]
        parsed = can_infer(prediction, data.options(position))
        answer = frame["answer"].iat[position] if data.has_answer else None
        records.append({"index": index, "prediction": prediction, "parsed": parsed, "answer": answer,
                        "correct": None if answer is None else parsed == answer})
    return pd.DataFrame.from_records(records)


def _percent_by(frame: pd.DataFrame, hit_column: str) -> dict:
    scores = {"overall": 100.0 * frame[hit_column].mean()}
    for column in GROUP_COLUMNS:
        if column in frame.columns and frame[column].notna().any():
            grouped = frame.groupby(column, dropna=True)[hit_column].mean().sort_index()
            scores[column] = {str(name): 100.0 * value for name, value in grouped.items()}
        else:
            scores[column] = {}
    return scores


def score_mmbench(data: MMBenchData, predictions: Mapping[int, str]) -> tuple[dict, pd.DataFrame]:
    """(result dict in percent, per-row matches). Raises if the file has no answers or coverage is wrong."""
    if not data.has_answer:
        raise ValueError(f"{data.path} has no answers (test split): write the submission file instead of scoring")
    check_prediction_coverage(data, predictions, "predictions")
    matches = match_predictions(data, predictions)
    groups = [c for c in GROUP_COLUMNS if c in data.frame.columns]
    rows = data.frame[["index", *groups]].merge(matches[["index", "correct"]], on="index")
    rows["correct"] = rows["correct"].astype(bool)
    rows["question"] = rows["index"] % CIRCULAR_OFFSET
    question_hits = rows.groupby("question")["correct"].all().rename("hit")
    questions = rows[rows["index"] < CIRCULAR_OFFSET].set_index("question")[groups].join(question_hits)
    result = {
        "circular": _percent_by(questions, "hit"),
        "vanilla": {**_percent_by(rows, "correct"),
                    "pass0": 100.0 * rows.loc[rows["index"] < CIRCULAR_OFFSET, "correct"].mean()},
        "n_questions": int(len(questions)),
        "n_rows": int(len(rows)),
        "unparsable": int(matches["parsed"].isna().sum()),
        "refusals": int((matches["parsed"] == REFUSAL).sum()),
        "matcher": MATCHER_NAME,
        "data_path": data.path,
    }
    return result, matches


def format_report(result: dict) -> str:
    """A terminal table: circular and vanilla accuracy (%) for overall, each L2 ability and each category."""
    circular, vanilla = result["circular"], result["vanilla"]
    lines = [("Overall", circular["overall"], vanilla["overall"])]
    for column in GROUP_COLUMNS:
        for name, value in circular[column].items():
            label = L2_ABBREVIATIONS.get(name, name) if column == "l2-category" else name
            lines.append((f"  {label}", value, vanilla[column].get(name, float("nan"))))
    width = max(len(label) for label, _, _ in lines)
    out = [f"{'MMBench':<{width}}  {'Circular %':>10}  {'Vanilla %':>9}"]
    out += [f"{label:<{width}}  {c:>10.1f}  {v:>9.1f}" for label, c, v in lines]
    out.append(f"{result['n_questions']} questions, {result['n_rows']} rows, {result['unparsable']} unparsable "
               f"(counted wrong), {result['refusals']} refusals; matcher: {result['matcher']}")
    return "\n".join(out)
