import base64
import io
import json

import numpy as np
import pandas as pd
from PIL import Image

from llava_hf.data.sources import DataSource
from llava_hf.demo.synthetic import ANSWER_SUFFIX, COLORS, SHAPES, make_synthetic_dataset, make_synthetic_mmbench_tsv
from llava_hf.data.validate import validate_data


def test_dataset_is_valid_deterministic_and_matches_the_task(tmp_path):
    paths = make_synthetic_dataset(str(tmp_path / "a"), n_pretrain=20, n_finetune=60, seed=5)
    again = make_synthetic_dataset(str(tmp_path / "b"), n_pretrain=20, n_finetune=60, seed=5)
    assert open(paths["finetune_json"]).read() == open(again["finetune_json"]).read()
    assert (tmp_path / "a/images/pretrain_000003.jpg").read_bytes() == (tmp_path / "b/images/pretrain_000003.jpg").read_bytes()
    for key in ("pretrain_json", "finetune_json"):
        report = validate_data(DataSource(paths[key], paths["image_folder"]), num_workers=2)
        assert report.ok, report.format()

    pretrain = json.load(open(paths["pretrain_json"]))
    caption = pretrain[0]["conversations"][1]["value"]
    words = caption.split()
    assert words[0] == "A" and words[1] in COLORS and words[2] in SHAPES and caption.endswith("background.")
    image = Image.open(tmp_path / "a/images" / pretrain[0]["image"]).convert("RGB")
    assert 200 <= min(image.size) and max(image.size) <= 500
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    shape_pixels = (np.abs(pixels - np.array(COLORS[words[1]])).sum(axis=1) < 40).sum()  # allow JPEG noise
    smallest_box = (0.35 * min(image.size)) ** 2
    assert shape_pixels > 0.4 * smallest_box  # a triangle fills half its box, minus edge noise

    finetune = json.load(open(paths["finetune_json"]))
    text_only = [s for s in finetune if "image" not in s]
    assert 0 < len(text_only) < len(finetune) * 0.2
    question = next(s for s in finetune if "image" in s)["conversations"]
    assert question[0]["value"].startswith("<image>\nWhat ") and question[0]["value"].endswith("\n" + ANSWER_SUFFIX)
    assert "\nA. " in question[0]["value"] and "\nD. " in question[0]["value"]
    assert question[1]["value"] in set(COLORS) | set(SHAPES)


def test_mmbench_tsv_has_circular_passes(tmp_path):
    path = make_synthetic_mmbench_tsv(str(tmp_path / "dev.tsv"), n_questions=5, seed=9)
    frame = pd.read_csv(path, sep="\t")
    assert list(frame.columns) == ["index", "question", "hint", "A", "B", "C", "D", "answer", "category",
                                   "l2-category", "split", "image"]
    assert len(frame) == 20 and frame["hint"].isna().all()
    rows = frame.set_index("index")
    for g in range(5):
        base = rows.loc[g]
        answer_text = base[base["answer"]]
        Image.open(io.BytesIO(base64.b64decode(base["image"]))).verify()
        for k in (1, 2, 3):
            rotated = rows.loc[g + k * 1_000_000]
            assert [rotated[c] for c in "ABCD"] == [base["ABCD"[(i + k) % 4]] for i in range(4)]
            assert rotated[rotated["answer"]] == answer_text
            assert str(rotated["image"]) == str(g)
    other = pd.read_csv(make_synthetic_mmbench_tsv(str(tmp_path / "other.tsv"), n_questions=5, seed=10), sep="\t")
    assert other["image"][0] != frame["image"][0]
