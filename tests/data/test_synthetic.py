import base64
import io
import json
import re

import numpy as np
import pandas as pd
from PIL import Image

from llava_hf.data.conversation import conversation_to_turns
from llava_hf.data.sources import DataSource
from llava_hf.demo.synthetic import (
    COLORS, OPTION_LETTERS, SHAPES, SHORT_ANSWER_SUFFIX, make_synthetic_dataset, make_synthetic_mmbench_tsv,
    multiple_choice,
)
from llava_hf.data.templates import get_template
from llava_hf.data.validate import validate_data
from llava_hf.eval.mmbench_data import EN_INSTRUCTION, load_mmbench_tsv
from llava_hf.eval.mmbench_runner import chat_prompts


def test_dataset_is_valid_deterministic_and_matches_the_task(tmp_path):
    paths = make_synthetic_dataset(str(tmp_path / "a"), n_pretrain=20, n_finetune=60, seed=5)
    again = make_synthetic_dataset(str(tmp_path / "b"), n_pretrain=20, n_finetune=60, seed=5)
    assert open(paths["finetune_json"]).read() == open(again["finetune_json"]).read()
    assert (tmp_path / "a/images/pretrain_000003.jpg").read_bytes() == (tmp_path / "b/images/pretrain_000003.jpg").read_bytes()
    for key in ("pretrain_json", "finetune_json"):
        report = validate_data(DataSource(paths[key], paths["image_folder"]), num_workers=2)
        assert report.ok and not report.warnings, report.format()

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


def image_color(path) -> str:
    """The colour of the shape: the COLORS entry closest to most pixels (JPEG noise allowed)."""
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
    return max(COLORS, key=lambda c: (np.abs(pixels - np.array(COLORS[c])).sum(axis=1) < 40).sum())


def turn_kind(question: str, answer: str) -> tuple[str, str]:
    """(which stage-2 form the turn has, the word it answers with: an option's text for a letter)."""
    if question.endswith("\n" + EN_INSTRUCTION):
        options = dict(re.findall(r"^([A-D])\. (.+)$", question, flags=re.MULTILINE))
        assert list(options) == list(OPTION_LETTERS) and answer in options
        return "multiple_choice", options[answer]
    if question.endswith("\n" + SHORT_ANSWER_SUFFIX):
        return "short", answer
    assert answer.endswith(".") and len(answer.split()) >= 3  # a sentence
    return "sentence", answer


def test_stage2_has_the_llava_mix_kinds_with_right_answers(tmp_path):
    """Short answers, sentences, multiple choice answered by letter, two-turn chats, and a few text-only."""
    paths = make_synthetic_dataset(str(tmp_path), n_pretrain=0, n_finetune=80, seed=3)
    kinds = set()
    for sample in json.load(open(paths["finetune_json"])):
        turns = conversation_to_turns(sample["conversations"], has_image="image" in sample)
        if "image" not in sample:  # "Which option is the color red?" / "Which of these words is a shape?"
            kind, word = turn_kind(turns[0].input, turns[0].output)
            question = turns[0].input.split("?")[0]
            assert kind == "multiple_choice"
            assert question.endswith(" " + word) or word in {"color": COLORS, "shape": SHAPES}[question.split()[-1]]
            kinds.add("text_only")
            continue
        assert turns[0].input.startswith("<image>\n") and all("<image>" not in t.input for t in turns[1:])
        color = image_color(tmp_path / "images" / sample["image"])
        for turn in turns:
            kind, word = turn_kind(turn.input, turn.output)
            kinds.add(kind)
            if "What color" in turn.input:
                assert color in word.strip(".").split(), (turn, color)
        kinds.add({1: "one_turn", 2: "two_turn"}[len(turns)])
    assert kinds == {"short", "sentence", "multiple_choice", "one_turn", "two_turn", "text_only"}


def test_multiple_choice_training_prompt_is_the_mmbench_eval_prompt(tmp_path, tiny_processor):
    """Rendered for training with internlm2_chat, the demo's question is exactly what `llava_hf.eval` feeds."""
    data = load_mmbench_tsv(make_synthetic_mmbench_tsv(str(tmp_path / "dev.tsv"), n_questions=3, seed=4))
    eval_prompts = chat_prompts(data, tiny_processor)
    template = get_template("internlm2_chat")
    for position, eval_prompt in enumerate(eval_prompts):
        row = data.frame.iloc[position]
        user_text = multiple_choice(row["question"], [row[letter] for letter in OPTION_LETTERS])
        conversation = [{"from": "human", "value": user_text}, {"from": "gpt", "value": row["answer"]}]
        turn = conversation_to_turns(conversation, has_image=True)[0]
        assert "<s>" + template.instruction.format(input=turn.input) == eval_prompt
    assert eval_prompts[0].endswith(f"D. {data.frame['D'][0]}\n{EN_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n")


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
