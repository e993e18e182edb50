"""The MMBench leaderboard submission file (`mmbench_result.xlsx`), written with openpyxl.

Columns `index, question, hint, A, B, C, D, prediction, category, l2-category, split` (+ `answer` on dev):
what the MMBench server needs (`index` as an int, all four option columns even when empty) plus what
VLMEvalKit, LLaVA and XTuner keep. No `image` column. Cells are cleaned so Excel and the server accept them:
control characters removed, strings cut to Excel's 32,767-character cell limit, and strings starting with
"=" stored as text rather than formulas.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from .mmbench_data import MMBenchData, is_missing

EXCEL_CELL_LIMIT = 32_767
SUBMISSION_COLUMNS = ("index", "question", "hint", "A", "B", "C", "D", "prediction", "category", "l2-category",
                      "split")


def clean_cell_text(text: str) -> str:
    """Drop the control characters openpyxl rejects and cut to the Excel cell limit."""
    return ILLEGAL_CHARACTERS_RE.sub("", text)[:EXCEL_CELL_LIMIT]


def submission_columns(data: MMBenchData) -> list[str]:
    extra_options = [letter for letter in data.option_letters if letter > "D"]
    columns = list(SUBMISSION_COLUMNS)
    position = columns.index("D") + 1
    columns[position:position] = extra_options
    return columns + (["answer"] if data.has_answer else [])


def write_submission(data: MMBenchData, predictions: Mapping[int, str], path: str) -> None:
    """Every TSV row, in TSV order, with its raw prediction; written to a temporary file then renamed."""
    columns = submission_columns(data)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("mmbench")
    sheet.append(columns)
    frame = data.frame
    for position in range(len(frame)):
        row = frame.iloc[position]
        values = {"index": int(row["index"]), "prediction": predictions[int(row["index"])]}
        cells = []
        for column in columns:
            value = values[column] if column in values else row.get(column)
            if value is None or is_missing(value):
                cells.append(None)
            elif isinstance(value, str):
                cell = WriteOnlyCell(sheet, value=clean_cell_text(value))
                cell.data_type = "s"  # never a formula
                cells.append(cell)
            else:
                cells.append(value.item() if hasattr(value, "item") else value)
        sheet.append(cells)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(dir=directory, prefix=".mmbench_result.", suffix=".xlsx")
    os.close(handle)
    try:
        workbook.save(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        os.unlink(tmp_path)
        raise
