import json
import os

import pytest
import torch
from PIL import Image

from llava_hf.data import dataset as dataset_module
from llava_hf.data.dataset import build_llava_dataset
from llava_hf.data.errors import DataError
from llava_hf.data.sources import DataSource
from llava_hf.data.tokenization import IGNORE_INDEX


def conv(question, answer="A red square."):
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def write_source(folder, samples, color=(255, 0, 0), name="data.json"):
    os.makedirs(folder / "images", exist_ok=True)
    for sample in samples:
        if "image" in sample:
            Image.new("RGB", (60, 40), color).save(folder / "images" / sample["image"])
    (folder / name).write_text(json.dumps(samples))
    return DataSource(str(folder / name), str(folder / "images"))


@pytest.fixture
def source(tmp_path):
    return write_source(tmp_path / "a", [
        {"id": "img0", "image": "0.jpg", "conversations": conv("<image>\nWhat is it?")},
        {"id": "txt1", "conversations": conv("Say hi.", "Hi.")},
        {"id": "long2", "image": "2.jpg", "conversations": conv("<image>\n" + "very long question " * 100)},
        {"id": "img3", "image": "3.jpg", "conversations": conv("Caption this.\n<image>", "A red square on white.")},
    ])


def test_items_lengths_and_drop_count(source, tiny_processor):
    ds = build_llava_dataset(source, tiny_processor, max_length=64)
    assert len(ds) == 3 and ds.stats["no_supervised_tokens"] == 1 and ds.stats["samples"] == 4
    image_item, text_item = ds[0], ds[1]
    n = tiny_processor.image_seq_length
    assert (image_item["input_ids"] == tiny_processor.image_token_id).sum() == n
    assert image_item["pixel_values"].shape == (3, 56, 56) and image_item["pixel_values"].dtype == torch.float32
    assert "pixel_values" not in text_item
    assert (image_item["labels"][image_item["input_ids"] == tiny_processor.image_token_id] == IGNORE_INDEX).all()
    assert ds.lengths == [len(ds[i]["input_ids"]) for i in range(len(ds))]
    assert ds.modality_lengths == [ds.lengths[0], -ds.lengths[1], ds.lengths[2]]


def test_sources_keep_their_own_image_folders(tmp_path, tiny_processor):
    red = write_source(tmp_path / "red", [{"image": "x.jpg", "conversations": conv("<image>\nQ")}], (255, 0, 0))
    blue = write_source(tmp_path / "blue", [{"image": "x.jpg", "conversations": conv("<image>\nQ")}], (0, 0, 255))
    ds = build_llava_dataset([red, blue], tiny_processor)
    red_pixels, blue_pixels = ds[0]["pixel_values"], ds[1]["pixel_values"]
    assert red_pixels[0].mean() > red_pixels[2].mean() and blue_pixels[2].mean() > blue_pixels[0].mean()


def test_pad_to_square_reaches_the_processor(source, tiny_processor, monkeypatch):
    seen = []
    original = tiny_processor.preprocess_images
    monkeypatch.setattr(tiny_processor, "preprocess_images", lambda images, pad_to_square=None: seen.append(pad_to_square) or original(images, pad_to_square))
    build_llava_dataset(source, tiny_processor, pad_to_square=True)[0]
    assert seen == [True]


def test_bad_samples_raise_naming_each_or_are_skipped_and_counted(tmp_path, tiny_processor):
    bad = write_source(tmp_path / "b", [
        {"id": "ok", "image": "0.jpg", "conversations": conv("<image>\nQ")},
        {"id": "gptfirst", "conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}]},
        {"id": "twoimages", "image": "2.jpg", "conversations": conv("<image>\n<image>\nQ")},
    ])
    with pytest.raises(DataError, match=r"2 bad samples:\n.*data.json sample #1 \(id 'gptfirst'\): .*gpt.*\n.*sample #2 \(id 'twoimages'\)"):
        build_llava_dataset(bad, tiny_processor)
    ds = build_llava_dataset(bad, tiny_processor, skip_bad_samples=True)
    assert len(ds) == 1 and ds.stats["bad"] == 2
    ds = build_llava_dataset(bad, tiny_processor, exclude={(0, 1), (0, 2)})
    assert len(ds) == 1 and ds.stats["excluded"] == 2


def test_trimmed_turns_are_trained_without_and_counted_in_the_summary(tmp_path, tiny_processor, caplog):
    clean = conv("<image>\nQ") + conv("Q2", "B.")
    source = write_source(tmp_path / "t", [
        {"id": "clean", "image": "0.jpg", "conversations": clean},
        {"id": "gpt-first", "image": "1.jpg", "conversations": [{"from": "gpt", "value": "Hi!"}, *clean]},
        {"id": "unanswered", "image": "2.jpg", "conversations": [*clean, {"from": "human", "value": "Q3"}]},
        {"id": "both", "conversations": [{"from": "gpt", "value": "Hi!"}, *conv("Q"), {"from": "human", "value": "?"}]},
    ])
    with caplog.at_level("WARNING", logger="llava_hf.data.dataset"):
        ds = build_llava_dataset(source, tiny_processor)
    assert len(ds) == 4 and ds.stats["bad"] == 0
    assert ds.stats["leading_gpt_turn_stripped"] == 2 and ds.stats["trailing_human_turn_dropped"] == 2
    assert "leading 'gpt' turns stripped from 2 samples, an unanswered last 'human' turn dropped from 2" in caplog.text
    for i in (1, 2):
        assert torch.equal(ds[i]["input_ids"], ds[0]["input_ids"]) and torch.equal(ds[i]["labels"], ds[0]["labels"])


def test_plain_template_names_text_only_and_multi_turn_samples(tmp_path, tiny_processor):
    source = write_source(tmp_path / "p", [
        {"id": "caption", "image": "0.jpg", "conversations": conv("<image>\nDescribe.")},
        {"id": "text", "conversations": conv("Say hi.", "Hi.")},
        {"id": "chat", "image": "2.jpg", "conversations": conv("<image>\nQ") + conv("Q2")},
    ])
    with pytest.raises(DataError, match=r"2 bad samples:\n.*sample #1 \(id 'text'\): the 'plain' template .* text-only\n"
                                         r".*sample #2 \(id 'chat'\): the 'plain' template .* has 2"):
        build_llava_dataset(source, tiny_processor, template="plain")
    assert len(build_llava_dataset(source, tiny_processor, template="plain", skip_bad_samples=True)) == 1


def test_missing_image_at_load_time_names_the_sample(source, tiny_processor):
    ds = build_llava_dataset(source, tiny_processor, max_length=64)
    os.remove(os.path.join(source.image_folder, "3.jpg"))
    with pytest.raises(DataError, match=r"data.json sample #3 \(id 'img3'\): image '3.jpg' not found"):
        ds[2]


def test_cached_images_are_decoded_once_and_unchanged(source, tiny_processor):
    ds = build_llava_dataset(source, tiny_processor, max_length=64, cache_images=True)
    plain = build_llava_dataset(source, tiny_processor, max_length=64)
    first = ds[2]["pixel_values"]
    os.remove(os.path.join(source.image_folder, "3.jpg"))  # a second decode would now fail
    assert torch.equal(ds[2]["pixel_values"], first)
    assert torch.equal(plain[0]["pixel_values"], ds[0]["pixel_values"])
    assert sorted(ds.image_cache) == [0, 2] and "pixel_values" not in ds[1]


def test_cache_is_reused_and_invalidated(source, tiny_processor, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    first = build_llava_dataset(source, tiny_processor, max_length=64, cache_dir=str(cache))
    assert len(os.listdir(cache)) == 1

    def fail(*args, **kwargs):
        raise AssertionError("tokenized again despite a valid cache")

    real = dataset_module._tokenize_sources
    monkeypatch.setattr(dataset_module, "_tokenize_sources", fail)
    again = build_llava_dataset(source, tiny_processor, max_length=64, cache_dir=cache)
    assert [again[i]["input_ids"].tolist() for i in range(3)] == [first[i]["input_ids"].tolist() for i in range(3)]
    assert again.stats == first.stats and again.modality_lengths == first.modality_lengths

    monkeypatch.setattr(dataset_module, "_tokenize_sources", real)
    build_llava_dataset(source, tiny_processor, max_length=128, cache_dir=cache)  # other setting -> new entry
    records = json.loads(open(source.data_path).read())[:2]
    with open(source.data_path, "w") as f:  # changed file -> new entry
        json.dump(records, f)
    assert len(build_llava_dataset(source, tiny_processor, max_length=64, cache_dir=cache)) == 2
    assert len([name for name in os.listdir(cache) if not name.startswith(".")]) == 3


def test_parallel_tokenization_gives_the_same_table(source, tiny_processor):
    one = build_llava_dataset(source, tiny_processor, max_length=64, num_proc=1)
    two = build_llava_dataset(source, tiny_processor, max_length=64, num_proc=2)
    assert one.table.to_dict() == two.table.to_dict() and one.stats == two.stats


def test_batches_feed_the_tiny_llava_model(tmp_path):
    from llava_hf.data.collator import LlavaDataCollator
    from llava_hf.data.sampler import ModalityLengthGroupedSampler
    from llava_hf.demo.synthetic import make_synthetic_dataset
    from llava_hf.testing import build_tiny_llava

    model, processor = build_tiny_llava()
    paths = make_synthetic_dataset(str(tmp_path), n_pretrain=0, n_finetune=40, seed=0)
    ds = build_llava_dataset(DataSource(paths["finetune_json"], paths["image_folder"]), processor, pad_to_square=True)
    sampler = ModalityLengthGroupedSampler(ds.modality_lengths, batch_size=4, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler,
                                         collate_fn=LlavaDataCollator(processor.tokenizer.pad_token_id))
    batch = next(iter(loader))
    n_images = sum(ds.modality_lengths[i] > 0 for i in list(sampler)[:4])
    assert batch["pixel_values"].shape == (n_images, 3, 112, 112)
    assert (batch["input_ids"] == processor.image_token_id).sum() == n_images * processor.image_seq_length
    with torch.no_grad():
        loss = model(**batch).loss
    assert torch.isfinite(loss)


COLORS = {"r.png": (255, 0, 0), "g.png": (0, 255, 0), "b.png": (0, 0, 255)}


@pytest.fixture
def multi_source(tmp_path):
    """Text-only, single-image and three-image samples in one file, each image a different colour."""
    os.makedirs(tmp_path / "m" / "images")
    for name, color in COLORS.items():
        Image.new("RGB", (30, 20), color).save(tmp_path / "m" / "images" / name)
    samples = [
        {"id": "three", "image": ["b.png", "r.png", "g.png"],
         "conversations": conv("Compare <image> and <image>.", "Blue, red.") + conv("And <image>?", "Green.")},
        {"id": "text", "conversations": conv("Say hi.", "Hi.")},
        {"id": "one", "image": "g.png", "conversations": conv("What is it?\n<image>")},
    ]
    (tmp_path / "m" / "data.json").write_text(json.dumps(samples))
    return DataSource(str(tmp_path / "m" / "data.json"), str(tmp_path / "m" / "images"))


def dominant_channels(pixel_values):
    """Which of R, G, B is brightest in each image of `[n, 3, H, W]`."""
    return pixel_values.mean(dim=(-1, -2)).argmax(dim=-1).tolist()


def test_text_single_and_multi_image_samples_mix_with_images_in_token_order(multi_source, tiny_processor):
    from llava_hf.data.templates import get_template
    from llava_hf.data.tokenization import expand_image_tokens, tokenize_conversation

    ds = build_llava_dataset(multi_source, tiny_processor)
    n = tiny_processor.image_seq_length
    assert ds.image_counts == [3, 0, 1]
    assert (ds.stats["with_image"], ds.stats["multi_image"], ds.stats["text_only"]) == (2, 1, 1)
    three, text, one = ds[0], ds[1], ds[2]
    assert three["pixel_values"].shape == (3, 3, 56, 56) and one["pixel_values"].shape == (3, 56, 56)
    assert dominant_channels(three["pixel_values"]) == [2, 0, 1]  # blue, red, green: the order of the list
    assert "pixel_values" not in text
    records = json.loads(open(multi_source.data_path).read())
    for item, record, n_images in zip((three, text, one), records, (3, 0, 1)):  # ids and labels as the template gives
        ids, labels = tokenize_conversation(record["conversations"], tiny_processor.tokenizer, get_template("internlm2_chat"),
                                            image_token_id=tiny_processor.image_token_id, has_image=n_images)
        ids, labels = expand_image_tokens(ids, labels, tiny_processor.image_token_id, n)
        assert torch.equal(item["input_ids"], ids) and torch.equal(item["labels"], labels)
        is_image = item["input_ids"] == tiny_processor.image_token_id
        assert int(is_image.sum()) == n_images * n and (item["labels"][is_image] == IGNORE_INDEX).all()
    # lengths (what the sampler and the token budget count) include every image's tokens
    assert ds.lengths == [len(ds[i]["input_ids"]) for i in range(3)]
    assert ds.modality_lengths == [ds.lengths[0], -ds.lengths[1], ds.lengths[2]]


def test_a_missing_second_image_at_load_time_names_the_sample_and_the_image(multi_source, tiny_processor):
    ds = build_llava_dataset(multi_source, tiny_processor)
    os.remove(os.path.join(multi_source.image_folder, "r.png"))
    with pytest.raises(DataError, match=r"data.json sample #0 \(id 'three'\): image 2 of 3: image 'r.png' not found"):
        ds[0]


def test_images_whose_token_truncation_cuts_off_are_left_out(multi_source, tiny_processor, caplog):
    from llava_hf.data.templates import get_template
    from llava_hf.data.tokenization import tokenize_conversation

    record = json.loads(open(multi_source.data_path).read())[0]
    ids, _ = tokenize_conversation(record["conversations"], tiny_processor.tokenizer, get_template("internlm2_chat"),
                                   image_token_id=tiny_processor.image_token_id, max_length=10_000, has_image=3)
    last_image = len(ids) - 1 - ids[::-1].index(tiny_processor.image_token_id)
    with caplog.at_level("WARNING", logger="llava_hf.data.dataset"):
        ds = build_llava_dataset(multi_source, tiny_processor, max_length=last_image)
    assert ds.image_counts == [2, 0, 1] and ds.stats["images_cut_by_truncation"] == 1
    assert "1 samples lost their last images to truncation" in caplog.text
    item = ds[0]
    assert dominant_channels(item["pixel_values"]) == [2, 0]  # the first two images, whose tokens remain
    assert int((item["input_ids"] == tiny_processor.image_token_id).sum()) == 2 * tiny_processor.image_seq_length


def test_multi_image_batches_keep_every_image_in_token_order(multi_source, tiny_processor):
    from llava_hf.data.collator import LlavaDataCollator
    from llava_hf.data.sampler import TokenBudgetBatchSampler

    ds = build_llava_dataset(multi_source, tiny_processor)
    items = [ds[i] for i in range(3)]
    for padding_free in (False, True):
        batch = LlavaDataCollator(tiny_processor.tokenizer.pad_token_id, padding_free=padding_free)(items)
        assert dominant_channels(batch["pixel_values"]) == [2, 0, 1, 1]  # blue, red, green, then the one-image green
        assert int((batch["input_ids"] == tiny_processor.image_token_id).sum()) == 4 * tiny_processor.image_seq_length
    # a token budget counts every image's tokens (the lengths are the expanded ones)
    both = ds.lengths[0] + ds.lengths[2]
    together = list(TokenBudgetBatchSampler(ds.modality_lengths, max_tokens=both, batch_size=2))
    apart = list(TokenBudgetBatchSampler(ds.modality_lengths, max_tokens=both - 1, batch_size=2))
    assert sorted(map(sorted, together)) == [[0, 2], [1]] and sorted(apart) == [[0], [1], [2]]
