"""Check data before training: every problem with its file, sample index and id, fast enough for 665K.

Image checks open only the header (`Image.open` + `.size`, no decode) in a thread pool, plus a look at
the file's last bytes for a JPEG/PNG end marker, which catches truncated downloads without decoding.
"""

import itertools
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL import Image

from .conversation import check_conversations
from .errors import DataError, describe_image, describe_sample
from .images import resolve_image_path
from .sources import DataSource, check_record, iter_records, sample_id, sample_images
from .templates import CHAT_TEMPLATE, DEFAULT_TEMPLATE, PromptTemplate, get_template
from .tokenization import (
    DEFAULT_MAX_LENGTH, IMAGES_CUT_OFF, check_template_accepts, has_supervised_tokens, tokenize_conversation,
)

ERROR, WARNING = "error", "warning"
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # PIL's decompression-bomb threshold
_PLACEHOLDER_IMAGE_ID = -200  # any id works: validation only counts tokens
_CHUNK = 512


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" or "warning"
    kind: str  # short category, counted in the summary
    message: str
    data_path: str
    source_index: int
    index: int | None = None  # None: the whole file
    sample_id: str | None = None

    def format(self) -> str:
        where = describe_sample(self.data_path, self.index, self.sample_id) if self.index is not None else self.data_path
        return f"{self.severity.upper():7s} {where}: {self.message}"


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # samples, with_image, text_only, image_found_by_stem, ...

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def bad_samples(self) -> frozenset[tuple[int, int]]:
        """`(source position, sample index)` of samples with an error: `build_llava_dataset(exclude=...)`."""
        return frozenset((p.source_index, p.index) for p in self.errors if p.index is not None)

    @property
    def has_file_errors(self) -> bool:
        """Errors that skipping samples cannot fix (unreadable data file, missing image folder)."""
        return any(p.index is None for p in self.errors)

    def format(self, max_problems: int = 50) -> str:
        problems = sorted(self.problems, key=lambda p: (p.severity != ERROR, p.source_index, p.index or -1))
        lines = [p.format() for p in problems[:max_problems]]
        if len(problems) > max_problems:
            lines.append(f"... {len(problems) - max_problems} more problems not shown")
        kinds = Counter(f"{p.severity} {p.kind}" for p in self.problems)
        c = self.counts
        several = f", {c['multi_image']} of them with several" if c["multi_image"] else ""
        lines.append(
            f"{c['samples']} samples ({c['with_image']} with image{several}, {c['text_only']} text-only) in "
            f"{c['files']} file(s): {len(self.errors)} errors, {len(self.warnings)} warnings"
        )
        if c["image_found_by_stem"]:
            lines.append(f"{c['image_found_by_stem']} images found under another extension (same stem)")
        lines += [f"  {n:8d} {kind}" for kind, n in sorted(kinds.items())]
        lines.append("OK" if self.ok else "FAILED: fix the errors above, or train with --skip_bad_samples to skip them")
        return "\n".join(lines)


def validate_data(
    sources: DataSource | list[DataSource],
    tokenizer=None,
    template: str | PromptTemplate = DEFAULT_TEMPLATE,
    max_length: int = DEFAULT_MAX_LENGTH,
    check_images: bool = True,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    num_workers: int = 16,
) -> ValidationReport:
    """Check JSON shape, roles and order, the image rules (one `<image>` per image: a single image in the first
    user turn, several anywhere in user turns), what the template accepts (`plain`: one turn with one image), every
    image file (inside the folder, exist, non-empty, header readable, not a decompression bomb, not truncated) and,
    with a tokenizer, that some reply token survives truncation to `max_length`. Leading `gpt` turns, a trailing
    unanswered `human` turn and images cut off by truncation are warnings: training leaves them out."""
    sources = [sources] if isinstance(sources, DataSource) else list(sources)
    if isinstance(template, str):  # "chat_template" is read off the tokenizer: without one, no template checks
        template = None if template == CHAT_TEMPLATE and tokenizer is None else get_template(template, tokenizer)
    report = ValidationReport()
    report.counts.update(samples=0, with_image=0, multi_image=0, text_only=0, files=len(sources), image_found_by_stem=0)
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for source_index, source in enumerate(sources):
            file_problem = _check_source(source, source_index)
            if file_problem is not None:
                report.problems.append(file_problem)
                continue
            checker = _SampleChecker(source, source_index, tokenizer, template, max_length,
                                     check_images and source.image_folder is not None, max_image_pixels)
            try:  # streamed in windows of chunks: memory stays flat however large the file
                for window in _batched(_chunks(source.data_path), 2 * max(1, num_workers)):
                    for problems, counts in pool.map(checker.check_chunk, window):
                        report.problems += problems
                        report.counts.update(counts)
            except DataError as e:
                report.problems.append(Problem(ERROR, "unreadable_data_file", str(e), source.data_path, source_index))
    return report


def _chunks(data_path: str):
    """`[(index, record), ...]` lists of `_CHUNK` records, read as the file streams."""
    return _batched(enumerate(record for _, record in iter_records(data_path)), _CHUNK)


def _batched(iterable, n: int):
    """Lists of `n` items (the last shorter): `itertools.batched`, which Python 3.11 lacks."""
    iterator = iter(iterable)
    while batch := list(itertools.islice(iterator, n)):
        yield batch


def _check_source(source: DataSource, source_index: int) -> Problem | None:
    if source.image_folder is not None and not os.path.isdir(source.image_folder):
        return Problem(ERROR, "missing_image_folder", f"image folder {source.image_folder} does not exist",
                       source.data_path, source_index)
    return None


@dataclass
class _SampleChecker:
    source: DataSource
    source_index: int
    tokenizer: object
    template: PromptTemplate | None
    max_length: int
    check_images: bool
    max_image_pixels: int

    def check_chunk(self, chunk) -> tuple[list[Problem], Counter]:
        problems, counts = [], Counter()
        for index, record in chunk:
            problems += self.check(record, index, counts)
        return problems, counts

    def check(self, record, index: int, counts: Counter) -> list[Problem]:
        def problem(kind, message, severity=ERROR):
            return Problem(severity, kind, message, self.source.data_path, self.source_index, index, sample_id(record))

        counts["samples"] += 1
        try:
            check_record(record)
            images = sample_images(record)
        except ValueError as e:
            return [problem("bad_sample", str(e))]
        counts["with_image" if images else "text_only"] += 1
        counts["multi_image"] += len(images) > 1
        problems = []
        try:
            kept = check_conversations(record["conversations"], len(images))
            problems += [problem(kind, message, WARNING) for kind, message in kept.warnings(record["conversations"])]
        except ValueError as e:
            problems.append(problem("bad_conversation", str(e)))
        else:
            if self.template is not None:
                try:
                    check_template_accepts(self.template, kept.n_turns, has_image=len(images))
                except ValueError as e:
                    problems.append(problem("not_for_template", str(e)))
        if images and self.source.image_folder is None:
            problems.append(problem("no_image_folder", "sample has an 'image' but its data source has no image_folder"))
        elif self.check_images:
            for number, image in enumerate(images, start=1):
                try:
                    counts["image_found_by_stem"] += check_image_file(self.source.image_folder, image, self.max_image_pixels)
                except ValueError as e:
                    problems.append(problem("bad_image", describe_image(number, len(images)) + str(e)))
        if self.tokenizer is not None and not any(p.severity == ERROR for p in problems):
            input_ids, labels = tokenize_conversation(
                record["conversations"], self.tokenizer, self.template, image_token_id=_PLACEHOLDER_IMAGE_ID,
                max_length=self.max_length, has_image=len(images),
            )
            if not has_supervised_tokens(labels):
                problems.append(problem(
                    "no_supervised_tokens",
                    f"no reply token left after truncation to max_length={self.max_length}; the sample will be dropped",
                    WARNING,
                ))
            elif input_ids.count(_PLACEHOLDER_IMAGE_ID) < len(images):
                kept_images = input_ids.count(_PLACEHOLDER_IMAGE_ID)
                problems.append(problem(
                    IMAGES_CUT_OFF,
                    f"truncation to max_length={self.max_length} (each image counts as one token) cuts off the last "
                    f"{len(images) - kept_images} of the sample's {len(images)} images; it trains without them",
                    WARNING,
                ))
        return problems


def check_image_file(image_folder: str, relative_path: str, max_pixels: int = MAX_IMAGE_PIXELS) -> bool:
    """Cheap checks without decoding; raises ValueError. Returns whether it was found by stem."""
    path, found_by_stem = resolve_image_path(image_folder, relative_path)
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"image file {path} is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            width, height = image.size
            image_format = image.format
    except Image.DecompressionBombError as e:
        raise ValueError(f"image file {path} is a possible decompression bomb: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"image file {path} is not a readable image: {e}") from e
    if width < 1 or height < 1:
        raise ValueError(f"image file {path} has size {width}x{height}")
    if width * height > max_pixels:
        raise ValueError(f"image file {path} is {width}x{height} = {width * height} pixels, over the "
                         f"{max_pixels}-pixel limit (decompression bomb protection)")
    end_marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}.get(image_format)
    if end_marker is not None:
        with open(path, "rb") as f:
            f.seek(max(0, size - 1024))
            if end_marker not in f.read():
                raise ValueError(f"image file {path} is truncated (no {image_format} end marker)")
    return found_by_stem
