"""LLaVA-format data files (`.json` list or `.jsonl` lines), each paired with its own image folder."""

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import DataError


@dataclass(frozen=True)
class DataSource:
    """One data file; `image` paths in it are relative to `image_folder` (None: text-only data)."""

    data_path: str
    image_folder: str | None = None


def pair_sources(data_paths, image_folders, *, flag_style: str = "_") -> list[DataSource]:
    """One `DataSource` per data file: one image folder per file, a single folder shared by all, or none (text-only).
    `flag_style` names the options in the error (`--data_path`, the spelling of every command, by default)."""
    data_paths, folders = list(data_paths), list(image_folders or [])
    if len(folders) == 1:
        folders *= len(data_paths)
    if folders and len(folders) != len(data_paths):
        data_flag, folder_flag = (f"--data{flag_style}path", f"--image{flag_style}folder")
        raise ValueError(f"{len(data_paths)} {data_flag} values but {len(folders)} {folder_flag} values; "
                         "give one folder per file, or one for all")
    return [DataSource(path, folder) for path, folder in zip(data_paths, folders or [None] * len(data_paths))]


def read_samples(data_path: str) -> list:
    """All records of a `.json` (top-level list) or `.jsonl` file; bad JSON raises DataError with the line."""
    return [record for _, record in iter_records(data_path)]


def iter_records(data_path: str) -> Iterator[tuple[str, object]]:
    """`(json_text, record)` for each record of a `.json` (top-level list) or `.jsonl` file, in order, reading the
    file in chunks: the whole file never exists as Python objects, and `json_text` is the record's own text in the
    file (nothing is re-serialized). Bad JSON raises DataError with the line and column, as `json.load` reports."""
    if not os.path.isfile(data_path):
        raise DataError(f"data file {data_path} does not exist")
    extension = os.path.splitext(data_path)[1].lower()
    if extension not in (".json", ".jsonl"):
        raise DataError(f"data file {data_path}: unsupported extension {extension!r}; use .json or .jsonl")
    with open(data_path, encoding="utf-8") as f:
        if extension == ".json":
            yield from _JsonListReader(f, data_path)
            return
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield line, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"data file {data_path}: invalid JSON on line {line_number} column {e.colno}: {e.msg}") from e


class _JsonListReader:
    """Iterates the elements of a top-level JSON list with `json.JSONDecoder.raw_decode` over a sliding buffer of
    `CHUNK` characters. Anything that is not a list is handed to `json.load` for its usual error or type."""

    CHUNK = 1 << 23
    MAX_RECORD = 1 << 26  # a record this long that still does not parse is broken, not cut by the buffer
    _WHITESPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, f, data_path: str):
        self.f, self.data_path = f, data_path
        self.buffer, self.pos, self.eof = "", 0, False
        self.lines_before, self.column_before = 0, 0  # of the text already dropped from the buffer
        self.decoder = json.JSONDecoder()

    def __iter__(self) -> Iterator[tuple[str, object]]:
        if self._next_char() != "[":
            self._load_whole()
        self.pos += 1
        if self._next_char() == "]":
            self.pos += 1
        else:
            while True:
                yield self._decode_value()
                char = self._next_char()
                self.pos += 1
                if char == "]":
                    break
                if char != ",":
                    self._fail(self.pos - 1, "Expecting ',' delimiter")
                self._next_char()
        if self._next_char() != "":
            self._fail(self.pos, "Extra data")

    def _decode_value(self) -> tuple[str, object]:
        while True:
            try:
                record, end = self.decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as e:
                if self.eof or len(self.buffer) - self.pos > self.MAX_RECORD:
                    self._fail(e.pos, e.msg)
                self._refill()
                continue
            if end == len(self.buffer) and not self.eof:  # a bare number may continue in the next chunk
                self._refill()
                continue
            text = self.buffer[self.pos : end]
            self.pos = end
            return text, record

    def _next_char(self) -> str:
        """Skip whitespace; the next character ("" at the end of the file)."""
        while True:
            self.pos = self._WHITESPACE.match(self.buffer, self.pos).end()
            if self.pos < len(self.buffer) or self.eof:
                return self.buffer[self.pos : self.pos + 1]
            self._refill()

    def _refill(self) -> None:
        dropped = self.buffer[: self.pos]
        newlines = dropped.count("\n")
        self.lines_before += newlines
        self.column_before = len(dropped) - dropped.rfind("\n") - 1 if newlines else self.column_before + len(dropped)
        chunk = self.f.read(self.CHUNK)
        self.eof = not chunk
        self.buffer, self.pos = self.buffer[self.pos :] + chunk, 0

    def _fail(self, pos: int, msg: str):
        line = self.lines_before + self.buffer.count("\n", 0, pos) + 1
        last_newline = self.buffer.rfind("\n", 0, pos)
        column = pos - last_newline if last_newline >= 0 else self.column_before + pos + 1
        raise DataError(f"data file {self.data_path}: invalid JSON at line {line} column {column}: {msg}")

    def _load_whole(self) -> None:
        self.f.seek(0)
        try:
            records = json.load(self.f)
        except json.JSONDecodeError as e:
            raise DataError(f"data file {self.data_path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
        raise DataError(f"data file {self.data_path}: expected a JSON list of samples, got {type(records).__name__}")


def sample_id(record) -> str | None:
    """The record's `id` as a string (integer ids become strings, like XTuner), or None."""
    if isinstance(record, dict) and record.get("id") is not None:
        return str(record["id"])
    return None


def sample_images(record) -> list[str]:
    """The record's relative image paths, in placeholder order: `[]` for a text-only sample, one path for LLaVA-1.5's
    `"image": "a.jpg"`, several for LLaVA-OneVision's interleaved `"image": ["a.jpg", "b.jpg"]`. Raises ValueError
    if malformed."""
    image = record.get("image")
    if image is None:
        return []
    if isinstance(image, str) and image:
        return [image]
    if isinstance(image, list) and all(isinstance(path, str) and path for path in image):
        return image
    raise ValueError(f"'image' must be a relative path or a list of them (one per '<image>'); got {image!r}")


def check_record(record) -> None:
    """The record is an object with a 'conversations' key (the conversation itself is checked elsewhere)."""
    if not isinstance(record, dict):
        raise ValueError(f"sample must be a JSON object, got {type(record).__name__}")
    if "conversations" not in record:
        raise ValueError("sample has no 'conversations'")
