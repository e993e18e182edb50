"""A small LLaVA data file mixing text-only, one-image and multi-image samples (LLaVA-OneVision's interleaved
form), for the tests that train on it."""

import json

from PIL import Image

COLORS = [(220, 40, 40), (40, 170, 60), (40, 70, 220)]


def write_mixed_data(folder, n_each: int = 4) -> tuple[str, str]:
    """`n_each` one-image, multi-image (2 or 3 images, placeholders in both turns) and text-only samples:
    `(data.json path, image folder)`."""
    images = folder / "images"
    images.mkdir(parents=True)
    for i, color in enumerate(COLORS):
        Image.new("RGB", (30 + 5 * i, 30), color).save(images / f"{i}.png")

    def turn(question, answer):
        return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]

    samples = []
    for i in range(n_each):
        samples.append({"id": f"one{i}", "image": f"{i % 3}.png", "conversations": turn("<image>\nWhat color?", "red")})
        several = [f"{(i + k) % 3}.png" for k in range(2 + i % 2)]
        questions = turn("Compare " + " and ".join(["<image>"] * (len(several) - 1)) + ".", "They differ.")
        samples.append({"id": f"multi{i}", "image": several, "conversations": questions + turn("And <image>?", "green")})
        samples.append({"id": f"text{i}", "conversations": turn("Say the word " * (i + 1), "the word")})
    path = folder / "data.json"
    path.write_text(json.dumps(samples))
    return str(path), str(images)
