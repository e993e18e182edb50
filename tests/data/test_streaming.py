"""Streaming JSON -> Arrow: the chunked reader gives exactly what `json.load` gives (records, or the same error with
the same line and column) whatever the chunk size, and the table build does not re-serialize records."""

import json
import random

import pytest

from llava_hf.data import dataset as dataset_module
from llava_hf.data.dataset import build_llava_dataset
from llava_hf.data.errors import DataError
from llava_hf.data.sources import DataSource, _JsonListReader, iter_records, read_samples


def random_document(rng: random.Random) -> str:
    """A JSON list of LLaVA-like records with awkward strings, spread over lines with uneven whitespace."""
    awkward = ['a "quoted" ] word', "comma, [bracket] {brace}", "line\nbreak", "üñí©ødé ✓", "back\\slash", ""]
    records = []
    for i in range(rng.randint(0, 6)):
        turns = [{"from": "human", "value": rng.choice(awkward) + " <image>"}, {"from": "gpt", "value": rng.choice(awkward)}]
        record = {"id": rng.choice([i, str(i), None]), "conversations": turns}
        if rng.random() < 0.5:
            record["image"] = f"{i}.jpg"
        records.append(record)
    parts = [json.dumps(r, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1])) for r in records]
    space = lambda: rng.choice(["", " ", "\n", "\n  ", "\t", "\r\n"])  # noqa: E731
    return space() + "[" + space() + ("," + space()).join(p + space() for p in parts) + "]" + space()


@pytest.fixture(params=[1, 5, 64, 1 << 23])
def chunk(request, monkeypatch):
    monkeypatch.setattr(_JsonListReader, "CHUNK", request.param)
    return request.param


def outcome_of_json_load(path):
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    except json.JSONDecodeError as e:
        return f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
    if not isinstance(records, list):
        return f"expected a JSON list of samples, got {type(records).__name__}"
    return records


def outcome_of_stream(path):
    try:
        pairs = list(iter_records(str(path)))
    except DataError as e:
        return str(e).split(": ", 1)[1]
    assert [json.loads(text) for text, _ in pairs] == [record for _, record in pairs]  # the text is the record
    return [record for _, record in pairs]


def test_records_and_errors_match_json_load_for_any_chunk_size(tmp_path, chunk):
    rng = random.Random(chunk)
    path = tmp_path / "d.json"
    for trial in range(150):
        document = random_document(rng)
        if trial % 2:  # break it: drop, double or replace one character
            i = rng.randrange(len(document))
            document = rng.choice([document[:i] + document[i + 1:], document[:i] + document[i] + document[i:],
                                   document[:i] + rng.choice(',]}:"x') + document[i + 1:]])
        path.write_text(document, encoding="utf-8")
        assert outcome_of_stream(path) == outcome_of_json_load(path), document


def test_read_samples_is_the_streamed_records(tmp_path, chunk):
    path = tmp_path / "d.json"
    path.write_text(random_document(random.Random(0)), encoding="utf-8")
    assert read_samples(str(path)) == outcome_of_json_load(path)


@pytest.mark.parametrize("document", ["", "{}", "3", '"x"', "[1, 2", "[1 2]", "[1,]", "[{}] []", "\ufeff[]", "[12345]"])
def test_edge_documents(tmp_path, chunk, document):
    path = tmp_path / "d.json"
    path.write_text(document, encoding="utf-8")
    assert outcome_of_stream(path) == outcome_of_json_load(path)


def test_build_streams_record_text_without_reserializing(tmp_path, tiny_processor, monkeypatch):
    samples = [{"id": i, "image": "x.jpg", "conversations": [{"from": "human", "value": f"<image>\nQ{i}"},
                                                                {"from": "gpt", "value": "A ✓"}]} for i in range(5)]
    document = json.dumps(samples, ensure_ascii=False, indent=2)
    (tmp_path / "d.json").write_text(document, encoding="utf-8")
    (tmp_path / "images").mkdir()
    seen = []
    encode = dataset_module._SampleEncoder.__call__
    monkeypatch.setattr(dataset_module._SampleEncoder, "__call__", lambda self, batch: seen.extend(batch["record"]) or encode(self, batch))
    ds = build_llava_dataset(DataSource(str(tmp_path / "d.json"), str(tmp_path / "images")), tiny_processor)
    assert len(ds) == 5 and list(ds.table["id"]) == [str(i) for i in range(5)]
    # the encoder got each record exactly as written in the file (indented, non-ASCII kept), not a json.dumps copy
    assert len(seen) == 5 and all(text in document and "\n    " in text and "✓" in text for text in seen)
