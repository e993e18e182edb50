"""The demo's synthetic task: one coloured shape on a plain background, in LLaVA JSON and MMBench TSV.

Small enough to learn on a laptop CPU, hard enough that the answer needs the image. Stage 1 captions
("A red circle on a white background."). Stage 2 is shaped like the LLaVA-1.5 mix: open questions with a
one-word answer (LLaVA's VQA suffix "Answer the question using a single word or phrase."), free questions
answered with a sentence, multiple-choice questions in MMBench's exact prompt answered with the option's
letter, and two-turn conversations, plus a few text-only questions. Everything is deterministic per seed.
"""

import base64
import io
import json
import os
import random

from PIL import Image, ImageDraw

from ..eval.mmbench_data import CIRCULAR_OFFSET, build_prompt, circular_rows
from ..eval.predictions_io import atomic_write_text

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 180),
    "orange": (240, 140, 30),
}
SHAPES = ("circle", "square", "triangle")
SHAPE_DISTRACTOR = "star"  # a fourth shape word so shape questions have four options
BACKGROUNDS = {"white": (255, 255, 255), "light grey": (220, 220, 220)}
IMAGE_SIZE_RANGE = (200, 500)
JPEG_QUALITY = 90
OPTION_LETTERS = ("A", "B", "C", "D")
SHORT_ANSWER_SUFFIX = "Answer the question using a single word or phrase."  # LLaVA-1.5's VQA instruction
COLOR_QUESTION = "What color is the shape?"
SHAPE_QUESTION = "What shape is in the image?"
DESCRIBE_QUESTION = "Describe the image."
CAPTION_INSTRUCTIONS = (
    "Give a short caption for the image.",
    "Describe the image briefly.",
    "Write a brief description of the picture.",
    "Render a clear and concise summary of the photo.",
)
# Stage-2 sample kinds and their shares of the image samples (text-only questions come on top).
FINETUNE_KINDS = {"short": 0.15, "sentence": 0.15, "multiple_choice": 0.6, "two_turn": 0.1}
TEXT_ONLY_FRACTION = 0.05


def draw_shape(rng: random.Random, color: str, shape: str, background: str) -> Image.Image:
    """An RGB image 200-500 px a side with one filled shape, bounding box 35-70 % of the short side."""
    width, height = rng.randint(*IMAGE_SIZE_RANGE), rng.randint(*IMAGE_SIZE_RANGE)
    side = int(min(width, height) * rng.uniform(0.35, 0.70))
    left, top = rng.randint(0, width - side), rng.randint(0, height - side)
    box = (left, top, left + side - 1, top + side - 1)
    image = Image.new("RGB", (width, height), BACKGROUNDS[background])
    draw = ImageDraw.Draw(image)
    fill = COLORS[color]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(left, box[3]), (box[2], box[3]), (left + side // 2, top)], fill=fill)
    return image


def multiple_choice(question: str, options: list[str]) -> str:
    """The user turn `llava_hf.eval` builds for an MMBench row without hint: `<image>\n`, the question,
    "A. option" lines and the letter instruction (the same function, so training and evaluation agree)."""
    letters = OPTION_LETTERS[: len(options)]
    return build_prompt({"question": question, "hint": None, **dict(zip(letters, options))}, letters)


def _question(rng: random.Random, kind: str, color: str, shape: str) -> tuple[str, list[str], str]:
    """(question, four options, correct option word) about the colour or the shape."""
    if kind == "color":
        options = [color] + rng.sample([c for c in COLORS if c != color], 3)
        question, answer = COLOR_QUESTION, color
    else:
        options = list(SHAPES) + [SHAPE_DISTRACTOR]
        question, answer = SHAPE_QUESTION, shape
    rng.shuffle(options)
    return question, options, answer


def _random_scene(rng: random.Random) -> tuple[str, str, str]:
    return rng.choice(list(COLORS)), rng.choice(SHAPES), rng.choice(list(BACKGROUNDS))


def _turn(rng: random.Random, kind: str, attribute: str, scene: tuple[str, str, str]) -> tuple[str, str]:
    """(user text with `<image>\n` in front, reply) of one question about the scene's colour or shape."""
    color, shape, background = scene
    if kind == "multiple_choice":
        question, options, answer = _question(rng, attribute, color, shape)
        return multiple_choice(question, options), OPTION_LETTERS[options.index(answer)]
    if kind == "short":
        question, answer = (COLOR_QUESTION, color) if attribute == "color" else (SHAPE_QUESTION, shape)
        return f"<image>\n{question}\n{SHORT_ANSWER_SUFFIX}", answer
    if attribute == "color":
        return f"<image>\n{COLOR_QUESTION}", f"The shape is {color}."
    if rng.random() < 0.5:
        return f"<image>\n{SHAPE_QUESTION}", f"It is a {color} {shape}."
    return f"<image>\n{DESCRIBE_QUESTION}", f"A {color} {shape} on a {background} background."


def _finetune_conversation(rng: random.Random, kind: str, scene) -> list[dict]:
    """One or two turns (two for `two_turn`: colour and shape, each asked in its own randomly picked form)."""
    attributes = ["color", "shape"]
    rng.shuffle(attributes)
    if kind == "two_turn":
        turns = [_turn(rng, rng.choice(("short", "sentence", "multiple_choice")), a, scene) for a in attributes]
    else:
        turns = [_turn(rng, kind, attributes[0], scene)]
    conversations = []
    for i, (question, answer) in enumerate(turns):
        if i:  # the image goes with the first question only
            question = question.removeprefix("<image>\n")
        conversations += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return conversations


def _text_only_conversation(rng: random.Random) -> list[dict]:
    """A multiple-choice question the text answers ("Which of these words is a color?"), replied with the
    letter like the image ones, so text-only rows teach the same answer format."""
    kind = rng.choice(("color", "shape"))
    right = rng.choice(list(COLORS) if kind == "color" else SHAPES)
    options = [right] + rng.sample(list(SHAPES) + [SHAPE_DISTRACTOR] if kind == "color" else list(COLORS), 3)
    rng.shuffle(options)
    question = multiple_choice(f"Which of these words is a {kind}?", options).removeprefix("<image>\n")
    return [{"from": "human", "value": question}, {"from": "gpt", "value": OPTION_LETTERS[options.index(right)]}]


def make_synthetic_dataset(out_dir: str, n_pretrain: int = 1000, n_finetune: int = 1000, seed: int = 0) -> dict[str, str]:
    """Write `pretrain.json`, `finetune.json` and `images/` under `out_dir`; return their paths."""
    rng = random.Random(f"llava-hf-synthetic-{seed}")
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)

    def save(name: str, color: str, shape: str, background: str) -> str:
        image = draw_shape(rng, color, shape, background)
        image.save(os.path.join(image_dir, name), format="JPEG", quality=JPEG_QUALITY)
        return name

    pretrain = []
    for i in range(n_pretrain):
        color, shape, background = _random_scene(rng)
        pretrain.append({
            "id": f"pretrain_{i:06d}",
            "image": save(f"pretrain_{i:06d}.jpg", color, shape, background),
            "conversations": [
                {"from": "human", "value": f"<image>\n{rng.choice(CAPTION_INSTRUCTIONS)}"},
                {"from": "gpt", "value": f"A {color} {shape} on a {background} background."},
            ],
        })

    finetune = []
    kinds, weights = list(FINETUNE_KINDS), list(FINETUNE_KINDS.values())
    for i in range(n_finetune):
        sample_id = f"finetune_{i:06d}"
        if rng.random() < TEXT_ONLY_FRACTION:
            finetune.append({"id": sample_id, "conversations": _text_only_conversation(rng)})
            continue
        scene = _random_scene(rng)
        conversations = _finetune_conversation(rng, rng.choices(kinds, weights)[0], scene)
        finetune.append({"id": sample_id, "image": save(f"{sample_id}.jpg", *scene), "conversations": conversations})

    paths = {
        "pretrain_json": os.path.join(out_dir, "pretrain.json"),
        "finetune_json": os.path.join(out_dir, "finetune.json"),
        "image_folder": image_dir,
    }
    atomic_write_text(paths["pretrain_json"], json.dumps(pretrain, indent=1))
    atomic_write_text(paths["finetune_json"], json.dumps(finetune, indent=1))
    return paths


MMBENCH_COLUMNS = ("index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "split", "image")


def make_synthetic_mmbench_tsv(path: str, n_questions: int = 100, seed: int = 1) -> str:
    """A VLMEvalKit-format MMBench dev TSV with circular passes (`circular_rows`): all pass-0 questions first,
    each with its base64 JPEG, then the rotated passes, whose `image` refers to their question's row. Its own
    seed stream keeps it held out from training."""
    import pandas as pd

    rng = random.Random(f"llava-hf-mmbench-{seed}")
    questions = []
    for g in range(n_questions):
        color, shape, background = _random_scene(rng)
        kind = rng.choice(("color", "shape"))
        question, options, answer = _question(rng, kind, color, shape)
        image = base64.b64encode(_jpeg_bytes(draw_shape(rng, color, shape, background))).decode()
        questions.append({
            "index": g, "question": question, "hint": None, **dict(zip(OPTION_LETTERS, options)),
            "answer": OPTION_LETTERS[options.index(answer)],
            "category": "color_recognition" if kind == "color" else "shape_recognition",
            "l2-category": "finegrained_perception (instance-level)" if kind == "color" else "coarse_perception",
            "split": "dev", "image": image,
        })
    frame = circular_rows(pd.DataFrame(questions, columns=list(MMBENCH_COLUMNS)), OPTION_LETTERS)
    frame = frame.sort_values("index", key=lambda index: index >= CIRCULAR_OFFSET, kind="stable")
    atomic_write_text(path, frame.to_csv(sep="\t", index=False))
    return path


def _jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
