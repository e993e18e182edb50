import json
import os

import numpy as np
import pytest
from PIL import Image

from llava_hf.data.sources import DataSource
from llava_hf.data.validate import validate_data


def conv(question, answer="A."):
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (30, 20), (1, 2, 3)).save(images / "good.jpg")
    Image.new("RGBA", (30, 20)).save(images / "rgba.png")
    Image.new("CMYK", (30, 20)).save(images / "cmyk.jpg")
    Image.fromarray(np.zeros((20, 30), dtype=np.uint16)).save(images / "depth16.png")
    Image.new("RGB", (8, 8)).save(images / "ocr.gif")
    (images / "empty.jpg").write_bytes(b"")
    (images / "junk.jpg").write_bytes(b"not an image at all" * 10)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    noise.save(images / "full.jpg")
    data = (images / "full.jpg").read_bytes()
    (images / "cut.jpg").write_bytes(data[: len(data) // 2])
    Image.new("1", (3000, 3000)).save(images / "huge.png")
    (tmp_path / "secret.jpg").write_bytes(data)
    return tmp_path


def write(folder, samples):
    path = folder / "data.json"
    path.write_text(json.dumps(samples))
    return DataSource(str(path), str(folder / "images"))


def test_good_data_passes_including_odd_modes_and_stem_lookup(folder):
    samples = [{"id": str(i), "image": name, "conversations": conv("<image>\nQ")}
               for i, name in enumerate(["good.jpg", "rgba.png", "cmyk.jpg", "depth16.png", "ocr.jpg"])]
    samples.append({"id": "t", "conversations": conv("Q")})
    report = validate_data(write(folder, samples), num_workers=2)
    assert report.ok, report.format()
    assert report.counts["samples"] == 6 and report.counts["text_only"] == 1
    assert report.counts["image_found_by_stem"] == 1
    assert report.format().endswith("OK")


BAD_CASES = [
    ({"image": "missing.jpg", "conversations": conv("<image>\nQ")}, "image 'missing.jpg' not found"),
    ({"image": "junk.jpg", "conversations": conv("<image>\nQ")}, "junk.jpg is not a readable image"),
    ({"image": "cut.jpg", "conversations": conv("<image>\nQ")}, r"cut.jpg is truncated \(no JPEG end marker\)"),
    ({"image": "empty.jpg", "conversations": conv("<image>\nQ")}, r"empty.jpg is empty \(0 bytes\)"),
    ({"image": "../secret.jpg", "conversations": conv("<image>\nQ")}, "escapes the image folder"),
    ({"image": "huge.png", "conversations": conv("<image>\nQ")}, "decompression bomb"),
    ({"image": "good.jpg", "conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "<image>"}]},
     "no complete turn"),
    ({"image": "good.jpg", "conversations": conv("<image>\n<image>\nQ")}, "2 '<image>' tokens"),
    ({"image": "good.jpg", "conversations": conv("Q") + conv("<image>")}, "missing from the first human turn"),
    ({"conversations": conv("<image>\nQ")}, "the sample has no 'image'"),
    ({"image": "good.jpg"}, "sample has no 'conversations'"),
    ("just a string", "sample must be a JSON object"),
]


@pytest.mark.parametrize("sample, message", BAD_CASES)
def test_each_bad_case_is_reported_with_index_and_id(folder, sample, message):
    good = {"id": "fine", "image": "good.jpg", "conversations": conv("<image>\nQ")}
    if isinstance(sample, dict):
        sample = {"id": "bad-one", **sample}
    report = validate_data(write(folder, [good, sample]), num_workers=2, max_image_pixels=4_000_000)
    assert not report.ok
    assert len(report.errors) == 1
    problem = report.errors[0]
    assert problem.index == 1 and problem.sample_id == ("bad-one" if isinstance(sample, dict) else None)
    assert report.bad_samples == {(0, 1)}
    text = report.format()
    assert "data.json sample #1" in text and "FAILED" in text
    import re
    assert re.search(message, problem.message), problem.message


def test_leading_gpt_and_trailing_human_turns_are_warnings_by_sample(folder, image_tokenizer):
    gpt_first = [{"from": "gpt", "value": "Hi! Ask me about the image."}] + conv("<image>\nQ")
    unanswered = conv("<image>\nQ") + [{"from": "human", "value": "Thanks!"}]
    samples = [{"id": "clean", "image": "good.jpg", "conversations": conv("<image>\nQ")},
               {"id": "sharegpt-1", "image": "good.jpg", "conversations": gpt_first},
               {"id": "sharegpt-2", "conversations": conv("Q") + [{"from": "human", "value": "More?"}]},
               {"id": "sharegpt-3", "image": "good.jpg", "conversations": gpt_first + unanswered[2:]}]
    report = validate_data(write(folder, samples), tokenizer=image_tokenizer, num_workers=1)
    assert report.ok and not report.errors
    found = sorted((p.sample_id, p.kind) for p in report.warnings)
    assert found == [("sharegpt-1", "leading_gpt_turn_stripped"), ("sharegpt-2", "trailing_human_turn_dropped"),
                     ("sharegpt-3", "leading_gpt_turn_stripped"), ("sharegpt-3", "trailing_human_turn_dropped")]
    lines = report.format().splitlines()
    assert any(line.startswith("WARNING") and "data.json sample #1 (id 'sharegpt-1'): stripped 1 leading 'gpt' turn(s)"
               in line for line in lines)
    assert any(line.startswith("WARNING") and "data.json sample #2 (id 'sharegpt-2'): dropped the last 'human' turn"
               in line for line in lines)
    assert "2 warning leading_gpt_turn_stripped" in [" ".join(line.split()) for line in lines]
    assert lines[-1] == "OK"


@pytest.mark.parametrize("tokenizer", [None, "image_tokenizer"])
def test_plain_template_refuses_text_only_and_multi_turn_samples(folder, request, tokenizer):
    tokenizer = request.getfixturevalue(tokenizer) if tokenizer else None
    samples = [{"id": "caption", "image": "good.jpg", "conversations": conv("<image>\nQ")},
               {"id": "text", "conversations": conv("Q")},
               {"id": "chat", "image": "good.jpg", "conversations": conv("<image>\nQ") + conv("Q2")}]
    report = validate_data(write(folder, samples), tokenizer=tokenizer, template="plain", num_workers=1)
    assert [(p.sample_id, p.kind) for p in report.errors] == [("text", "not_for_template"), ("chat", "not_for_template")]
    assert "needs an image; this sample is text-only" in report.errors[0].message
    assert "takes one turn; this sample has 2" in report.errors[1].message
    assert validate_data(write(folder, samples[:1] + samples[2:]), template="internlm2_chat", num_workers=1).ok


def test_malformed_json_is_a_file_error_and_other_files_are_still_checked(folder):
    broken = folder / "broken.json"
    broken.write_text("[{")
    fine = write(folder, [{"image": "good.jpg", "conversations": conv("<image>\nQ")}])
    report = validate_data([DataSource(str(broken), str(folder / "images")), fine], num_workers=2)
    assert not report.ok and report.has_file_errors
    assert "broken.json: invalid JSON" in report.errors[0].message
    assert report.counts["samples"] == 1


def test_token_length_check_with_a_tokenizer(folder, image_tokenizer):
    long_question = {"id": "long", "image": "good.jpg", "conversations": conv("<image>\n" + "word " * 300)}
    report = validate_data(write(folder, [long_question]), tokenizer=image_tokenizer, max_length=64, num_workers=1)
    assert report.ok  # the dataset drops it and counts it: a warning, not an error
    assert [p.kind for p in report.warnings] == ["no_supervised_tokens"]
    assert "max_length=64" in report.warnings[0].message


def test_many_samples_in_parallel_keep_their_indices(folder):
    samples = [{"id": f"s{i}", "image": "good.jpg" if i % 7 else "missing.jpg", "conversations": conv("<image>\nQ")}
               for i in range(2000)]
    report = validate_data(write(folder, samples), num_workers=4)
    assert sorted(p.index for p in report.errors) == list(range(0, 2000, 7))
    assert all(p.sample_id == f"s{p.index}" for p in report.errors)
    assert os.path.exists(folder / "images" / "good.jpg")


def test_multi_image_samples_pass_and_every_image_file_is_checked(folder, image_tokenizer):
    samples = [{"id": "pair", "image": ["good.jpg", "rgba.png"], "conversations": conv("<image> vs <image>: which?")},
               {"id": "interleaved", "image": ["good.jpg", "cmyk.jpg", "ocr.jpg"],
                "conversations": conv("<image>\nQ") + conv("<image> and <image>?")},
               {"id": "one", "image": ["good.jpg"], "conversations": conv("Q <image>")},
               {"id": "text", "conversations": conv("Q")}]
    report = validate_data(write(folder, samples), tokenizer=image_tokenizer, num_workers=1)
    assert report.ok and not report.problems, report.format()
    assert (report.counts["with_image"], report.counts["multi_image"], report.counts["text_only"]) == (3, 2, 1)
    assert report.counts["image_found_by_stem"] == 1  # ocr.jpg is ocr.gif, the third image of sample 1
    assert "3 with image, 2 of them with several, 1 text-only" in report.format()


MULTI_IMAGE_CASES = [
    ({"image": ["good.jpg", "rgba.png"], "conversations": conv("<image> <image> <image> Q")}, "internlm2_chat",
     "bad_conversation", "3 '<image>' tokens but the sample has 2 images"),
    ({"image": ["good.jpg", "rgba.png", "cmyk.jpg"], "conversations": conv("<image> <image> Q")}, "internlm2_chat",
     "bad_conversation", "2 '<image>' tokens but the sample has 3 images"),
    ({"image": ["good.jpg", "missing.jpg"], "conversations": conv("<image> <image> Q")}, "internlm2_chat",
     "bad_image", "image 2 of 2: image 'missing.jpg' not found"),
    ({"image": ["good.jpg", "rgba.png"], "conversations": conv("<image> <image> Q")}, "plain",
     "not_for_template", "'plain' template .* takes one image; this sample has 2"),
]


@pytest.mark.parametrize("sample, template, kind, message", MULTI_IMAGE_CASES)
def test_multi_image_problems_name_the_sample(folder, image_tokenizer, sample, template, kind, message):
    good = {"id": "fine", "image": "good.jpg", "conversations": conv("<image>\nQ")}
    report = validate_data(write(folder, [good, {"id": "bad-one", **sample}]), tokenizer=image_tokenizer,
                           template=template, num_workers=1)
    assert [(p.index, p.sample_id, p.kind) for p in report.errors] == [(1, "bad-one", kind)]
    import re
    assert re.search(message, report.errors[0].message), report.errors[0].message
    assert report.bad_samples == {(0, 1)}


def test_images_cut_off_by_truncation_are_a_warning(folder, image_tokenizer):
    from llava_hf.data.templates import get_template
    from llava_hf.data.tokenization import tokenize_conversation

    sample = {"id": "long", "image": ["good.jpg", "rgba.png"],
              "conversations": conv("<image>\nQ", "A long answer.") + conv("<image>\nAnd this?")}
    ids, _ = tokenize_conversation(sample["conversations"], image_tokenizer, get_template("internlm2_chat"),
                                   image_token_id=-1, max_length=10_000, has_image=2)
    second_image = len(ids) - 1 - ids[::-1].index(-1)
    report = validate_data(write(folder, [sample]), tokenizer=image_tokenizer, max_length=second_image, num_workers=1)
    assert report.ok and [p.kind for p in report.warnings] == ["images_cut_by_truncation"]
    assert "cuts off the last 1 of the sample's 2 images" in report.warnings[0].message
