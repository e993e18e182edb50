"""Reload training outputs the way users do and check they are sound (used by `tests/gpu/launch_modes.sh`).

For each folder: load it with `llava_hf.inference.load_model_and_processor` (an adapter output through PEFT,
`--bits 4` for QLoRA outputs), check that no tensor came back empty or non-finite (the classic ZeRO-3
save bug writes 0-element tensors), compute the loss of the stage-2 answers on a fixed batch, and answer one
question about a demo image. Prints one line per folder.

    python tests/gpu/verify_outputs.py DIR [DIR ...] [--bits4 DIR ...]
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository root

import llava_hf  # noqa: E402,F401
from llava_hf.data.images import load_image  # noqa: E402
from llava_hf.demo import paths  # noqa: E402
from llava_hf.inference.chat_session import ChatSession  # noqa: E402
from llava_hf.inference.loading import load_model_and_processor  # noqa: E402


def answer_loss(model, processor, samples) -> float:
    """Mean loss of the reference answers (one token each after the prompt) under the model's chat template."""
    losses = []
    for sample in samples:
        question = sample["conversations"][0]["value"].replace("<image>", "").strip()
        answer = sample["conversations"][1]["value"]
        image = load_image(os.path.join(paths.DEMO_IMAGES, sample["image"]))
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        full = processor(text=prompt + answer, images=image, return_tensors="pt").to(model.device)
        prompt_len = processor(text=prompt, images=image, return_tensors="pt")["input_ids"].shape[1]
        labels = full["input_ids"].clone()
        labels[:, :prompt_len] = -100
        full["pixel_values"] = full["pixel_values"].to(model.dtype)
        with torch.no_grad():
            losses.append(model(**full, labels=labels).loss.float().item())
    return sum(losses) / len(losses)


def check(folder: str, bits: int | None) -> dict:
    model, processor = load_model_and_processor(folder, torch_dtype="bfloat16", bits=bits,
                                                device_map="cuda" if bits is None and torch.cuda.is_available() else None)
    # 4-bit weights (Params4bit) are packed bytes, whatever dtype holds them: only their size is checked
    bad = [name for name, tensor in model.named_parameters() if tensor.numel() == 0 or (
        type(tensor).__name__ != "Params4bit" and tensor.is_floating_point() and not torch.isfinite(tensor).all())]
    with open(paths.DEMO_FINETUNE_JSON) as f:
        samples = [s for s in json.load(f) if "image" in s][:32]
    session = ChatSession(model, processor, generation_options={"max_new_tokens": 8, "do_sample": False})
    image = load_image(os.path.join(paths.DEMO_IMAGES, samples[0]["image"]))
    reply = session.reply("What color is the shape?", images=[image])
    return {
        "folder": folder,
        "bits": bits,
        "checkpoint_mb": round(sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
                                   if f.endswith((".safetensors", ".bin"))) / 2**20, 2),
        "empty_or_nonfinite": bad[:5],
        "answer_loss": round(answer_loss(model, processor, samples), 4),
        "reply": reply,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="*")
    parser.add_argument("--bits4", nargs="*", default=[])
    args = parser.parse_args()
    failed = False
    for folder, bits in [(f, None) for f in args.folders] + [(f, 4) for f in args.bits4]:
        try:
            print(json.dumps(check(folder, bits)), flush=True)
        except Exception as error:  # report every folder, then fail
            failed = True
            print(json.dumps({"folder": folder, "bits": bits, "error": f"{type(error).__name__}: {error}"}), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
