"""Write a LLaVA-mix-shaped JSON (not a test; never commit its output): the size, record count, modality mix and
conversation lengths of `llava_v1_5_mix665k.json` (665,298 samples, ~777 MB), with seeded random words.

    python benchmarks/make_llava_mix.py /tmp/mix665k.json [--samples 665298] [--seed 0]

Parts, in the proportions of the real mix: LLaVA-Instruct conversations (2-10 rounds, long answers), short-answer
VQA (VQAv2 / GQA / OKVQA / OCR-VQA: 2-8 one-phrase rounds), region captions with boxes (RefCOCO / VG) and
6 % text-only ShareGPT conversations (200-1472 tokens). Image paths are written but no image files.
"""

import argparse
import json
import os
import random
import time

WORDS = (
    "the a of and to in is on with that this for it as at by from are an be was which or there image shows "
    "picture man woman person people dog cat car street table room window building tree sky water boat train "
    "bus plate food pizza sandwich phone laptop shirt hat red blue green white black yellow brown large small "
    "two three several standing sitting holding looking near next behind front left right top bottom "
    "background foreground possible reason because scene appears likely could would might also however while "
    "during after before group various including such objects area setting outdoor indoor kitchen bathroom "
    "field road sign light pole player ball game tennis baseball snow beach grass wall floor bed chair couch"
).split()
VQA_SUFFIX = "\nAnswer the question using a single word or phrase."


def sentence(rng: random.Random, n_words: int) -> str:
    words = rng.choices(WORDS, k=n_words)
    return " ".join(words).capitalize() + "."


def paragraph(rng: random.Random, n_words: int) -> str:
    parts, left = [], n_words
    while left > 0:
        n = min(left, rng.randint(8, 22))
        parts.append(sentence(rng, n))
        left -= n
    return " ".join(parts)


def with_image(question: str, rng: random.Random) -> str:
    return f"<image>\n{question}" if rng.random() < 0.5 else f"{question}\n<image>"


def instruct(rng, index):
    rounds = rng.choice([1, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10])
    conversations = []
    for r in range(rounds):
        question = sentence(rng, rng.randint(6, 18)).rstrip(".") + "?"
        answer = paragraph(rng, rng.randint(8, 32) if rounds > 1 else rng.randint(50, 180))
        conversations += [{"from": "human", "value": with_image(question, rng) if r == 0 else question},
                          {"from": "gpt", "value": answer}]
    return {"id": f"{index:012d}", "image": f"coco/train2017/{index:012d}.jpg", "conversations": conversations}


def short_vqa(rng, index):
    rounds = rng.randint(2, 8)
    conversations = []
    for r in range(rounds):
        question = sentence(rng, rng.randint(4, 10)).rstrip(".") + "?" + VQA_SUFFIX
        conversations += [{"from": "human", "value": with_image(question, rng) if r == 0 else question},
                          {"from": "gpt", "value": " ".join(rng.choices(WORDS, k=rng.randint(1, 3)))}]
    folder = rng.choice(["vg/VG_100K", "gqa/images", "ocr_vqa/images", "textvqa/train_images"])
    return {"id": f"{folder.split('/')[0]}_{index}", "image": f"{folder}/{index}.jpg", "conversations": conversations}


def region(rng, index):
    rounds = rng.randint(2, 6)
    conversations = []
    for r in range(rounds):
        box = [round(rng.random(), 2) for _ in range(4)]
        if rng.random() < 0.5:
            question = f"Please provide a short description for this region: {box}"
            answer = " ".join(rng.choices(WORDS, k=rng.randint(2, 8)))
        else:
            question = "Please provide the bounding box coordinate of the region this sentence describes: " + \
                " ".join(rng.choices(WORDS, k=rng.randint(2, 8)))
            answer = str(box)
        conversations += [{"from": "human", "value": with_image(question, rng) if r == 0 else question},
                          {"from": "gpt", "value": answer}]
    return {"id": f"vg_{index}", "image": f"vg/VG_100K_2/{index}.jpg", "conversations": conversations}


def text_only(rng, index):
    rounds = rng.randint(1, 5)
    budget = rng.randint(150, 1100)  # words; about 200-1472 tokens after the chat template
    conversations = []
    for _ in range(rounds):
        share = budget // rounds
        conversations += [{"from": "human", "value": paragraph(rng, max(5, share // 5))},
                          {"from": "gpt", "value": paragraph(rng, max(10, share - share // 5))}]
    return {"id": f"sharegpt_{index}", "conversations": conversations}


# (part, share of the samples), as in llava_v1_5_mix665k: 158K instruct, ~300K short VQA, ~160K regions, 40K text
PARTS = ((instruct, 0.24), (short_vqa, 0.46), (region, 0.24), (text_only, 0.06))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output")
    parser.add_argument("--samples", type=int, default=665_298)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    makers, weights = zip(*PARTS)
    start = time.perf_counter()
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("[\n")
        for index in range(args.samples):
            record = rng.choices(makers, weights)[0](rng, index)
            f.write(("" if index == 0 else ",\n") + json.dumps(record))
        f.write("\n]\n")
    os.replace(tmp, args.output)
    size = os.path.getsize(args.output)
    print(f"{args.output}: {args.samples} samples, {size / 1e6:.0f} MB in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
