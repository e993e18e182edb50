"""Hand-made MMBench data for the eval tests: a few questions circularised like VLMEvalKit, tiny JPEGs, and
hand-scored predictions for them."""

import json

import pandas as pd
from PIL import Image

from llava_hf.eval.mmbench_data import encode_image

NAN = float("nan")
# g, question, hint, options, answer, category, l2-category
QUESTIONS = [
    (1, "What is the main colour?", "A picture of a park.", ["red", "green", "blue", "yellow"], "B",
     "image_scene", "coarse_perception"),
    (2, "Which word is written?", NAN, ["cat", "dog", "sun", NAN], "C", "ocr",
     "finegrained_perception (instance-level)"),
    (3, "Who is shown?", NAN, ["a singer", "a painter", NAN, NAN], "A", "celebrity_recognition",
     "finegrained_perception (instance-level)"),
    (4, "图中是什么季节？", NAN, ["春天", "夏天", "秋天", "冬天"], "D", "image_scene", "coarse_perception"),
]


def question_frame(questions=QUESTIONS, with_answer=True):
    rows = []
    for g, question, hint, options, answer, category, l2 in questions:
        colour = (40 * g % 256, 90, 160)
        row = {"index": g, "question": question, "hint": hint, "A": options[0], "B": options[1],
               "C": options[2], "D": options[3], "answer": answer, "category": category,
               "image": encode_image(Image.new("RGB", (8 + g, 6), colour)), "source": "handmade",
               "l2-category": l2, "split": "dev"}
        if not with_answer:
            del row["answer"]
        rows.append(row)
    return pd.DataFrame(rows)


def write_tsv(path, frame):
    frame.to_csv(path, sep="\t", index=False)
    return str(path)


# per row of the 13-row dev TSV (ground truth in the comment); test_mmbench_scoring has the hand-computed scores
HANDMADE_PREDICTIONS = {
    1: "B",  # B  right
    1000001: "(A) green",  # A  right
    2000001: "The answer is A.",  # D  wrong: question 1 is right in 3 of 4 passes -> circular 0
    3000001: "C. green",  # C  right
    2: "sun",  # C  right by option text (3-option question, no hint)
    1000002: "**B**",  # B  right
    2000002: "Answer: A",  # A  right -> question 2 circular 1
    3: "I am not sure.",  # A  unparsable = wrong (2-option question) -> circular 0
    1000003: "B",  # B  right
    4: "D",  # D  right (Chinese question)
    1000004: "冬天",  # C  right by Chinese option text
    2000004: "答案: B",  # B  right
    3000004: "A",  # A  right -> question 4 circular 1
}


def strict_json(line: str):
    """json.loads that refuses NaN/Infinity, as JSON readers other than Python's do."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)
