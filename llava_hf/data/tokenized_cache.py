"""On-disk cache of the tokenized text table, so restarts, other ranks and stage 2 skip tokenization.

The key covers everything the table depends on: each data file (path, size, mtime), the tokenizer
(hash of its serialized vocabulary/rules and special ids), and the settings (template, max_length, image
token, exclusions). The main process builds first; the others then load what it wrote. A changed file
or tokenizer gives a new key, never a stale table. Writes go to a temporary folder renamed into place.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

import datasets
from accelerate import PartialState

from .errors import DataError

CACHE_FORMAT_VERSION = 3  # 2: leading gpt / trailing human turns trimmed, counted in the stats; 3: `images` lists
STATS_FILE = "llava_stats.json"


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of what decides token ids: the backend's full serialization (or the vocab) and special ids."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    specials = [tokenizer.bos_token_id, tokenizer.eos_token_id, sorted(tokenizer.get_added_vocab().items())]
    digest.update(json.dumps(specials).encode())
    return digest.hexdigest()


def cache_key(data_paths, tokenizer, settings: dict) -> str:
    files = []
    for path in data_paths:
        stat = os.stat(path)
        files.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
    payload = {
        "version": CACHE_FORMAT_VERSION, "files": files, "tokenizer": tokenizer_fingerprint(tokenizer),
        "settings": {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in settings.items()},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def load_or_build(cache_dir, data_paths, tokenizer, settings: dict, build):
    """`(table, stats)` from `cache_dir/<key>` if present, else from `build()` (then saved there)."""
    if cache_dir is None:
        return build()
    for path in data_paths:
        if not os.path.isfile(path):
            raise DataError(f"data file {path} does not exist")
    path = os.path.join(cache_dir, cache_key(data_paths, tokenizer, settings))
    with PartialState().main_process_first():
        if os.path.isdir(path):
            return load(path)
        table, stats = build()
        save(path, table, stats)
        return table, stats


def load(path: str):
    with open(os.path.join(path, STATS_FILE)) as f:
        stats = json.load(f)
    return datasets.load_from_disk(path), stats


def save(path: str, table: datasets.Dataset, stats: dict) -> None:
    """Write to a sibling temp folder, then rename: a crash never leaves a half-written cache."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(path) or ".")
    try:
        table.save_to_disk(tmp)
        with open(os.path.join(tmp, STATS_FILE), "w") as f:
            json.dump(stats, f)
        os.rename(tmp, path)
    except OSError:
        if not os.path.isdir(path):  # another process won the race: theirs is equivalent
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
