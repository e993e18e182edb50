"""LLaVA-format data files (`.json` list or `.jsonl` lines), each paired with its own image folder."""

import json
import os
from dataclasses import dataclass

from .errors import DataError


@dataclass(frozen=True)
class DataSource:
    """One data file; `image` paths in it are relative to `image_folder` (None: text-only data)."""

    data_path: str
    image_folder: str | None = None


def read_samples(data_path: str) -> list:
    """All records of a `.json` (top-level list) or `.jsonl` file; bad JSON raises DataError with the line."""
    if not os.path.isfile(data_path):
        raise DataError(f"data file {data_path} does not exist")
    extension = os.path.splitext(data_path)[1].lower()
    if extension not in (".json", ".jsonl"):
        raise DataError(f"data file {data_path}: unsupported extension {extension!r}; use .json or .jsonl")
    with open(data_path, encoding="utf-8") as f:
        if extension == ".json":
            try:
                records = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"data file {data_path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
            if not isinstance(records, list):
                raise DataError(f"data file {data_path}: expected a JSON list of samples, got {type(records).__name__}")
            return records
        records = []
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"data file {data_path}: invalid JSON on line {line_number} column {e.colno}: {e.msg}") from e
        return records


def sample_id(record) -> str | None:
    """The record's `id` as a string (integer ids become strings, like XTuner), or None."""
    if isinstance(record, dict) and record.get("id") is not None:
        return str(record["id"])
    return None


def sample_image(record) -> str | None:
    """The record's relative image path, or None for a text-only sample; raises ValueError if malformed."""
    image = record.get("image")
    if image is None:
        return None
    if not isinstance(image, str) or not image:
        raise ValueError(f"'image' must be one relative path string; got {image!r} (multi-image samples are not supported)")
    return image


def check_record(record) -> None:
    """The record is an object with a 'conversations' key (the conversation itself is checked elsewhere)."""
    if not isinstance(record, dict):
        raise ValueError(f"sample must be a JSON object, got {type(record).__name__}")
    if "conversations" not in record:
        raise ValueError("sample has no 'conversations'")
