"""`LlavaDataset`: tokenized text (built once, cached on disk) + images decoded lazily per item.

The text table stores the compact encoding (each image is one token) so a 665K-sample cache stays small;
`__getitem__` expands every image token to `image_seq_length` positions and preprocesses the sample's images.
"""

import json
import logging
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Collection, Sequence

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .conversation import LEADING_GPT_STRIPPED, TRAILING_HUMAN_DROPPED, check_conversations
from .errors import DataError, describe_image, describe_sample
from .images import load_image, resolve_image_path
from .sources import DataSource, check_record, iter_records, sample_id, sample_images
from .templates import DEFAULT_TEMPLATE, PromptTemplate, get_template
from .tokenization import (
    DEFAULT_MAX_LENGTH, IMAGES_CUT_OFF, BulkEncoder, expand_image_tokens, has_supervised_tokens, tokenize_conversation,
)
from .tokenized_cache import load_or_build

logger = logging.getLogger(__name__)

MAX_ERRORS_SHOWN = 20


class LlavaDataset(torch.utils.data.Dataset):
    """Items: `{"input_ids", "labels"}` (LongTensor) plus `"pixel_values"` for samples with images: `[3, H, W]` for
    one image, `[n, 3, H, W]` for several (in the order of their tokens).

    `modality_lengths` (full lengths, every image's tokens counted; negative for text-only samples) feeds
    `ModalityLengthGroupedSampler`; `image_counts` holds each sample's number of images; `stats` counts what was read,
    kept, dropped (no supervised token left) and skipped (bad samples).
    """

    def __init__(self, table: datasets.Dataset, sources: Sequence[DataSource], processor, pad_to_square: bool,
                 stats: dict[str, int], cache_images: bool = False):
        self.table = table
        # Preprocessed pixels kept after first use: for small datasets (the demo), where decoding and resizing
        # the images costs more than the training step. Each dataloader worker fills its own copy.
        self.image_cache: dict[int, torch.Tensor] | None = {} if cache_images else None
        self.sources = list(sources)
        self.processor = processor
        self.pad_to_square = pad_to_square
        self.stats = stats
        self.image_token_id = processor.image_token_id
        self.image_seq_length = processor.image_seq_length
        # whole columns at once (`[:]`): iterating a 665K-row Column costs seconds per column
        self.lengths: list[int] = table["length"][:]
        self.image_counts: list[int] = pc.list_value_length(table.with_format("arrow")["images"]).to_pylist()
        self.modality_lengths: list[int] = [n if images else -n for n, images in zip(self.lengths, self.image_counts)]

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = self.table[int(i)]
        input_ids, labels = expand_image_tokens(row["input_ids"], row["labels"], self.image_token_id, self.image_seq_length)
        item = {"input_ids": input_ids, "labels": labels}
        if row["images"]:
            pixels = self.image_cache.get(int(i)) if self.image_cache is not None else None
            if pixels is None:
                pixels = self.preprocess_images(self.load_sample_images(row))
                if self.image_cache is not None:
                    self.image_cache[int(i)] = pixels
            item["pixel_values"] = pixels
        return item

    def load_sample_images(self, row) -> list:
        source = self.sources[row["source"]]
        images = []
        for number, relative_path in enumerate(row["images"], start=1):
            try:
                path, _ = resolve_image_path(source.image_folder, relative_path)
                images.append(load_image(path))
            except ValueError as e:
                where = describe_sample(source.data_path, row["index"], row["id"])
                raise DataError(f"{where}: {describe_image(number, len(row['images']))}{e}") from e
        return images

    def preprocess_images(self, images) -> torch.Tensor:
        """The one place images meet the processor (expand-to-square, resize, normalize): `[3, H, W]` for one image
        (as LLaVA-1.5 items are), `[n, 3, H, W]` for several."""
        pixels = self.processor.preprocess_images(images, pad_to_square=self.pad_to_square)
        return pixels[0] if len(images) == 1 else pixels


def build_llava_dataset(
    sources: DataSource | Sequence[DataSource],
    processor,
    template: str | PromptTemplate = DEFAULT_TEMPLATE,
    max_length: int = DEFAULT_MAX_LENGTH,
    pad_to_square: bool = False,
    cache_dir: str | None = None,
    skip_bad_samples: bool = False,
    exclude: Collection[tuple[int, int]] = (),
    num_proc: int | None = None,
    cache_images: bool = False,
) -> LlavaDataset:
    """Read, check and tokenize every source (or reuse the on-disk cache) and wrap it as a LlavaDataset.

    Bad samples (broken conversation, image rules) raise one DataError listing them, unless
    `skip_bad_samples`, which skips and counts them. `exclude` holds `(source position, sample index)`
    pairs to leave out, e.g. `ValidationReport.bad_samples` when training runs with `--skip_bad_samples`
    (image-file problems are only found by the validator, which opens the files).
    Samples whose labels are all -100 after truncation are dropped and counted in `stats`.
    Tokenization runs in `num_proc` processes (default: all cores for 20K+ samples, else in-process).
    `cache_images` keeps preprocessed images in memory after their first use (small datasets only).
    """
    sources = [sources] if isinstance(sources, DataSource) else list(sources)
    if not sources:
        raise DataError("no data sources given")
    tokenizer = processor.tokenizer
    if isinstance(template, str):
        template = get_template(template, tokenizer)
    settings = {
        "template": template, "max_length": max_length, "image_token_id": processor.image_token_id,
        "image_seq_length": processor.image_seq_length, "skip_bad_samples": skip_bad_samples,
        "exclude": sorted(exclude), "has_image_folder": [s.image_folder is not None for s in sources],
    }

    def build():
        return _tokenize_sources(sources, tokenizer, template, max_length, processor.image_token_id,
                                 processor.image_seq_length, skip_bad_samples, set(exclude), num_proc)

    table, stats = load_or_build(cache_dir, [s.data_path for s in sources], tokenizer, settings, build)
    summary = ", ".join(f"{k}={v}" for k, v in stats.items())
    left_out = stats["bad"] + stats["excluded"] + stats["no_supervised_tokens"]
    trimmed = stats[LEADING_GPT_STRIPPED] or stats[TRAILING_HUMAN_DROPPED]
    (logger.warning if left_out or trimmed else logger.info)("LLaVA data: %s (%d samples left out)", summary, left_out)
    if trimmed:
        logger.warning("LLaVA data: leading 'gpt' turns stripped from %d samples, an unanswered last 'human' turn "
                       "dropped from %d (as LLaVA and XTuner do; `llava-hf validate-data` lists them)",
                       stats[LEADING_GPT_STRIPPED], stats[TRAILING_HUMAN_DROPPED])
    if stats.get(IMAGES_CUT_OFF):
        logger.warning("LLaVA data: %d samples lost their last images to truncation at max_length=%d (each image "
                       "counts as one token there); they train with the images whose tokens remain",
                       stats[IMAGES_CUT_OFF], max_length)
    return LlavaDataset(table, sources, processor, pad_to_square, stats, cache_images=cache_images)


_TABLE_FEATURES = datasets.Features({
    "source": datasets.Value("int32"), "index": datasets.Value("int64"), "id": datasets.Value("string"),
    "images": datasets.Sequence(datasets.Value("string")), "input_ids": datasets.Sequence(datasets.Value("int32")),
    "labels": datasets.Sequence(datasets.Value("int32")), "length": datasets.Value("int32"),
    "status": datasets.Value("string"), "error": datasets.Value("string"),
    "trimmed": datasets.Sequence(datasets.Value("string")),
})
PARALLEL_THRESHOLD = 20_000  # below this many samples, worker start-up costs more than it saves


class _SampleEncoder:
    """Batched `datasets.map` function: JSON record -> compact ids/labels, or a status saying why not."""

    def __init__(self, sources, tokenizer, template, max_length, image_token_id, image_seq_length):
        self.sources = sources
        self.tokenizer = tokenizer
        self.template = template
        self.max_length = max_length
        self.image_token_id = image_token_id
        self.image_seq_length = image_seq_length

    def __call__(self, batch):
        out = {name: [] for name in ("id", "images", "input_ids", "labels", "length", "status", "error", "trimmed")}
        for source_index, index, text in zip(batch["source"], batch["index"], batch["record"]):
            record = json.loads(text)
            source = self.sources[source_index]
            images, input_ids, labels, status, error, trimmed = [], [], [], "ok", None, []
            try:
                check_record(record)
                images = sample_images(record)
                if images and source.image_folder is None:
                    raise ValueError("sample has an 'image' but its data source has no image_folder")
                input_ids, labels = tokenize_conversation(
                    record["conversations"], self.tokenizer, self.template, image_token_id=self.image_token_id,
                    max_length=self.max_length, has_image=len(images),
                )
                if not has_supervised_tokens(labels):
                    status = "no_supervised_tokens"
                conversations = record["conversations"]
                trimmed = [kind for kind, _ in check_conversations(conversations, len(images)).warnings(conversations)]
            except ValueError as e:
                status, error = "bad", f"{describe_sample(source.data_path, index, sample_id(record))}: {e}"
            n_image_tokens = input_ids.count(self.image_token_id) if images else 0
            if n_image_tokens < len(images) and status == "ok":  # truncation cut the last images' tokens off
                images = images[:n_image_tokens]
                trimmed.append(IMAGES_CUT_OFF)
            length = len(input_ids) + n_image_tokens * (self.image_seq_length - 1)
            row = dict(id=sample_id(record), images=images, input_ids=input_ids, labels=labels, length=length,
                       status=status, error=error, trimmed=trimmed)
            for name, value in row.items():
                out[name].append(value)
        return out


_RECORDS_SCHEMA = pa.schema([("source", pa.int32()), ("index", pa.int64()), ("record", pa.string())])
RECORDS_PER_WRITE = 10_000


def _records_table(sources, exclude, stats) -> datasets.Dataset:
    """Every record's own JSON text (with its source and index), streamed from the files into an Arrow file on disk
    and memory-mapped: the main process never holds the data as Python objects, and the tokenizing workers each
    read only their shard."""
    folder = tempfile.mkdtemp(prefix="llava_records_", dir=datasets.fingerprint.get_temporary_cache_files_directory())
    path = os.path.join(folder, "records.arrow")
    rows = {"source": [], "index": [], "record": []}
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, _RECORDS_SCHEMA) as writer:
        for source_index, source in enumerate(sources):
            for index, (text, _) in enumerate(iter_records(source.data_path)):
                stats["samples"] += 1
                if (source_index, index) in exclude:
                    stats["excluded"] += 1
                    continue
                rows["source"].append(source_index)
                rows["index"].append(index)
                rows["record"].append(text)
                if len(rows["record"]) == RECORDS_PER_WRITE:
                    writer.write_batch(pa.record_batch(rows, schema=_RECORDS_SCHEMA))
                    rows = {name: [] for name in rows}
        writer.write_batch(pa.record_batch(rows, schema=_RECORDS_SCHEMA))
    return datasets.Dataset.from_file(path)


def _tokenize_sources(sources, tokenizer, template, max_length, image_token_id, image_seq_length, skip_bad_samples,
                      exclude, num_proc):
    stats = {"samples": 0, "kept": 0, "with_image": 0, "text_only": 0, "multi_image": 0, "excluded": 0, "bad": 0,
             "no_supervised_tokens": 0, LEADING_GPT_STRIPPED: 0, TRAILING_HUMAN_DROPPED: 0}
    records = _records_table(sources, exclude, stats)
    if num_proc is None:
        num_proc = min(os.cpu_count() or 1, 16) if len(records) >= PARALLEL_THRESHOLD else 1
    encoder = _SampleEncoder(sources, BulkEncoder(tokenizer), template, max_length, image_token_id, image_seq_length)
    table = records.map(
        encoder, batched=True, batch_size=1000, num_proc=num_proc if num_proc > 1 else None,
        remove_columns=["record"], features=_TABLE_FEATURES, new_fingerprint=uuid.uuid4().hex,
        desc="Tokenizing LLaVA data" if num_proc > 1 else None,
    )
    statuses = table["status"][:]
    errors = [e for e, status in zip(table["error"][:], statuses) if status == "bad"]
    stats["bad"] = len(errors)
    stats["no_supervised_tokens"] = statuses.count("no_supervised_tokens")
    if errors and not skip_bad_samples:
        shown = "\n".join(errors[:MAX_ERRORS_SHOWN])
        more = f"\n... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise DataError(f"{len(errors)} bad samples:\n{shown}{more}\n"
                        "Fix them (`llava-hf validate-data` lists every problem) or skip them with skip_bad_samples=True.")
    keep = [i for i, status in enumerate(statuses) if status == "ok"]
    if not keep:
        raise DataError(f"no usable samples in {', '.join(s.data_path for s in sources)} ({stats})")
    if len(keep) < len(table):
        table = table.select(keep).flatten_indices()
    stats.update(Counter(kind for kinds in table["trimmed"][:] for kind in kinds))  # counted on the kept samples
    table = table.remove_columns(["status", "error", "trimmed"])
    stats["kept"] = len(table)
    image_counts = pc.list_value_length(table.with_format("arrow")["images"])
    stats["text_only"] = int(pc.sum(pc.equal(image_counts, 0)).as_py() or 0)
    stats["with_image"] = stats["kept"] - stats["text_only"]
    stats["multi_image"] = int(pc.sum(pc.greater(image_counts, 1)).as_py() or 0)
    return table, stats
