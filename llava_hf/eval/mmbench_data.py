"""MMBench TSVs (VLMEvalKit layout): loading, image references, options and the LLaVA/XTuner prompt.

One TSV row is one circular pass of a question: pass 0 has `index = g < 1e6`, pass k has
`index = g + k * 1e6` with the options rotated left by k. Later passes usually store `str(g)` in `image`
instead of a base64 copy, so references are resolved on the full file, before any sharding.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import string
from dataclasses import dataclass

import pandas as pd
from PIL import Image

CIRCULAR_OFFSET = 1_000_000
IMAGE_REFERENCE_MAX_LEN = 64  # VLMEvalKit: an `image` of at most 64 characters is another row's index
IMAGE_TOKEN = "<image>"
EN_INSTRUCTION = "Answer with the option's letter from the given choices directly."
CN_INSTRUCTION = "请直接回答选项字母。"
REQUIRED_COLUMNS = ("index", "question", "A", "B", "image")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_MISSING_HINT_STRINGS = {"", "nan", "none"}  # LLaVA's `is_none`


@dataclass
class MMBenchData:
    """A validated MMBench TSV: one row per circular pass, image references already resolved."""

    path: str
    frame: pd.DataFrame  # columns normalised; `index` int; `image` base64 on every row
    option_letters: list[str]  # option columns present in the file, e.g. ["A", "B", "C", "D"]
    has_answer: bool  # dev split (local scoring) vs test split (submission only)

    def __len__(self) -> int:
        return len(self.frame)

    def options(self, position: int) -> dict[str, str]:
        """`{letter: text}` for the non-missing options of the row at `position`."""
        return row_options(self.frame.iloc[position], self.option_letters)


def is_cn_string(text: str) -> bool:
    """XTuner's/VLMEvalKit's language test: any Han character selects the Chinese instruction."""
    return bool(_HAN.search(text))


def normalize_column_name(name: str) -> str:
    """`L2-category`, `l2_category` -> `l2-category`; single capital letters (option columns) stay as they are."""
    name = str(name).strip()
    if len(name) == 1 and name in string.ascii_uppercase:
        return name
    return name.lower().replace("_", "-")


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def row_options(row, option_letters) -> dict[str, str]:
    """Non-missing options keep their own letters (no relabelling), as in VLMEvalKit and XTuner."""
    return {letter: str(row[letter]) for letter in option_letters if not is_missing(row[letter])}


def row_hint(row) -> str | None:
    hint = row.get("hint")
    if is_missing(hint) or str(hint).strip().lower() in _MISSING_HINT_STRINGS:
        return None
    return str(hint)


def build_prompt(row, option_letters=("A", "B", "C", "D"), lang: str = "auto") -> str:
    """The LLaVA/XTuner/VLMEvalKit-LLaVA user turn, before any chat template.

    `<image>\\n[hint\\n]question\\nA. opt...\\n<instruction>`; `lang="auto"` picks the Chinese instruction when
    the text contains a Han character (XTuner's rule), "en"/"cn" force one (LLaVA's `--lang`).
    """
    text = str(row["question"])
    hint = row_hint(row)
    if hint is not None:
        text = f"{hint}\n{text}"
    for letter, option in row_options(row, option_letters).items():
        text += f"\n{letter}. {option}"
    if lang not in ("auto", "en", "cn"):
        raise ValueError(f"lang must be 'auto', 'en' or 'cn', got {lang!r}")
    chinese = lang == "cn" or (lang == "auto" and is_cn_string(text))
    return f"{IMAGE_TOKEN}\n{text}\n{CN_INSTRUCTION if chinese else EN_INSTRUCTION}"


def decode_image(b64: str, *, where: str = "") -> Image.Image:
    """base64 JPEG/PNG -> RGB PIL image (RGBA, P and LA images are converted too)."""
    try:
        image = Image.open(io.BytesIO(base64.b64decode(b64, validate=False)))
        return image.convert("RGB")
    except (binascii.Error, OSError, ValueError) as err:
        raise ValueError(f"{where}: the image is not a base64-encoded image ({err})") from err


def encode_image(image: Image.Image, format: str = "JPEG") -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=format)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def load_mmbench_tsv(path: str) -> MMBenchData:
    """Read and validate an MMBench/CCBench TSV; every problem raises a ValueError naming the file and row.

    Only empty cells count as missing: option texts such as "NA" or "None" stay text (pandas' default would
    turn them into NaN and silently drop the option).
    """
    try:
        frame = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], dtype={"image": str})
    except FileNotFoundError:
        raise FileNotFoundError(f"MMBench TSV not found: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable tab-separated file ({err})") from err
    frame.columns = [normalize_column_name(c) for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    if frame.columns.duplicated().any():
        raise ValueError(f"{path}: duplicate columns after normalising names: {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError(f"{path}: no rows")

    frame["index"] = _integer_index(frame["index"], path)
    duplicated = frame["index"][frame["index"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{path}: duplicate index values {duplicated[:5]}")
    option_letters = [c for c in string.ascii_uppercase if c in frame.columns]
    for column in option_letters:  # numeric-looking options ("3") must render as written
        frame[column] = frame[column].map(lambda v: v if is_missing(v) else str(v))
    frame["question"] = frame["question"].map(lambda v: "" if is_missing(v) else str(v))

    has_answer = "answer" in frame.columns and frame["answer"].notna().any()
    for position in range(len(frame)):
        row = frame.iloc[position]
        where = f"{path}: row with index {row['index']}"
        options = row_options(row, option_letters)
        if len(options) < 2:
            raise ValueError(f"{where} has {len(options)} option(s); MMBench questions have 2-4")
        if has_answer:
            answer = row["answer"]
            if is_missing(answer) or str(answer).strip() not in options:
                raise ValueError(f"{where}: answer {answer!r} is not one of its options {sorted(options)}")
    if has_answer:
        frame["answer"] = frame["answer"].map(lambda v: str(v).strip())
    main = set(frame["index"][frame["index"] < CIRCULAR_OFFSET])
    orphans = [i for i in frame["index"] if i % CIRCULAR_OFFSET not in main]
    if orphans:
        raise ValueError(f"{path}: circular passes {orphans[:5]} have no pass-0 row (index % 1e6) in the file")
    frame["image"] = resolve_image_references(frame, path)
    return MMBenchData(path=path, frame=frame.reset_index(drop=True), option_letters=option_letters,
                       has_answer=bool(has_answer))


def _integer_index(column: pd.Series, path: str) -> pd.Series:
    numeric = pd.to_numeric(column, errors="coerce")
    bad = column[numeric.isna() | (numeric % 1 != 0)]
    if len(bad):
        raise ValueError(f"{path}: column 'index' has non-integer values, e.g. {bad.iloc[0]!r} in data row "
                         f"{bad.index[0] + 1}")
    return numeric.astype("int64")


def resolve_image_references(frame: pd.DataFrame, path: str = "<tsv>") -> list[str]:
    """Replace every short `image` value (another row's index) by that row's base64, following chains."""
    images = dict(zip(frame["index"].tolist(), frame["image"].tolist()))
    resolved = []
    for index, image in images.items():
        seen = [index]
        while True:
            if is_missing(image) or str(image).strip() == "":
                raise ValueError(f"{path}: row with index {seen[-1]} has an empty image")
            image = str(image).strip()
            if len(image) > IMAGE_REFERENCE_MAX_LEN:
                break
            try:
                target = int(float(image))
            except ValueError:
                raise ValueError(f"{path}: row with index {seen[-1]}: image {image!r} is neither base64 nor the "
                                 f"index of another row") from None
            if target not in images:
                raise ValueError(f"{path}: row with index {seen[-1]} refers to the image of index {target}, "
                                 f"which is not in the file")
            if target in seen:
                raise ValueError(f"{path}: image references loop: {seen + [target]}")
            seen.append(target)
            image = images[target]
        resolved.append(image)
    return resolved


def circular_rows(questions: pd.DataFrame, option_letters=("A", "B", "C", "D")) -> pd.DataFrame:
    """Expand pass-0 questions into every circular pass, the way VLMEvalKit's `CIRCULAR` tool builds them.

    Pass k rotates the options left by k (new A = old B, ...), remaps `answer`, adds k * 1e6 to the index and
    stores `str(g)` in `image` instead of a second base64 copy. Useful to build synthetic TSVs.
    """
    rows = []
    for _, row in questions.iterrows():
        options = row_options(row, option_letters)
        letters, texts = list(options), list(options.values())
        for k in range(len(texts)):
            rotated = row.copy()
            for letter in option_letters:
                rotated[letter] = float("nan")
            for j, letter in enumerate(letters):
                rotated[letter] = texts[(j + k) % len(texts)]
            if k:
                rotated["index"] = int(row["index"]) + k * CIRCULAR_OFFSET
                rotated["image"] = str(int(row["index"]))
                if "answer" in row and not is_missing(row["answer"]):
                    rotated["answer"] = letters[(letters.index(row["answer"]) - k) % len(letters)]
            rows.append(rotated)
    return pd.DataFrame(rows).reset_index(drop=True)
