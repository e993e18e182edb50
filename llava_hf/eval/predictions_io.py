"""Prediction files: the resumable `predictions*.jsonl` of a run, and rescoring input (jsonl or xlsx).

A run appends one JSON line per row and flushes after every batch, so a crash loses at most one batch;
a line cut short by the crash is dropped on the next read. Final files are written atomically. Lines are strict
JSON (a missing value, such as the parsed letter of an unparsable answer, is `null`, never `NaN`), so any JSON
reader takes them; files written with `NaN` by earlier versions still read.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile

import pandas as pd

from .mmbench_data import is_missing

logger = logging.getLogger(__name__)


def atomic_write_text(path: str, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def read_jsonl_records(path: str) -> list[dict]:
    """Records of a predictions JSONL; a truncated last line (interrupted write) is skipped with a warning."""
    with open(path, encoding="utf-8") as stream:
        lines = stream.read().split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the write was interrupted
                logger.warning("%s: ignoring the incomplete last line %d", path, number)
                continue
            raise ValueError(f"{path}: line {number} is not valid JSON") from None
        if not isinstance(record, dict) or "index" not in record or "prediction" not in record:
            raise ValueError(f"{path}: line {number} needs the keys 'index' and 'prediction'")
        records.append(record)
    return records


def json_line(record: dict) -> str:
    """`record` as one line of strict JSON: pandas' missing values (NaN) become null; any other NaN or infinity
    raises instead of writing the `NaN` token that strict JSON readers refuse."""
    values = {key: None if is_missing(value) else value for key, value in record.items()}
    return json.dumps(values, ensure_ascii=False, allow_nan=False) + "\n"


def write_jsonl(path: str, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json_line(r) for r in records))


def append_jsonl(stream, records: list[dict]) -> None:
    """Append and flush, so the rows survive a crash of the process."""
    for record in records:
        stream.write(json_line(record))
    stream.flush()
    os.fsync(stream.fileno())


def load_predictions(path: str) -> dict[int, str]:
    """`{index: prediction}` from our `predictions.jsonl` or any xlsx/tsv/csv with `index` and `prediction`
    columns (XTuner's and VLMEvalKit's result files). Empty predictions stay empty strings, not "nan"."""
    if path.endswith(".jsonl"):
        pairs = [(r["index"], r["prediction"]) for r in read_jsonl_records(path)]
    else:
        if path.endswith((".xlsx", ".xls")):
            frame = pd.read_excel(path)
        elif path.endswith((".tsv", ".csv")):
            frame = pd.read_csv(path, sep="\t" if path.endswith(".tsv") else ",", keep_default_na=False,
                                na_values=[""])
        else:
            raise ValueError(f"{path}: predictions must be .jsonl, .xlsx, .tsv or .csv")
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        for column in ("index", "prediction"):
            if column not in frame.columns:
                raise ValueError(f"{path}: no '{column}' column (found {list(frame.columns)})")
        pairs = list(zip(frame["index"], frame["prediction"]))
    predictions: dict[int, str] = {}
    for number, (index, prediction) in enumerate(pairs, start=1):
        try:
            key = int(index)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: prediction {number} has a non-integer index {index!r}") from None
        text = "" if prediction is None or is_missing(prediction) else str(prediction)
        if key in predictions and predictions[key] != text:
            raise ValueError(f"{path}: index {key} has two different predictions")
        predictions[key] = text
    return predictions
