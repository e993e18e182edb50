"""Helpers shared by the shipping tests."""

import torch

# Prepended to every script `run_without_llava_hf` runs: even the editable install must not be found.
HIDE_LLAVA_HF = '''
import sys


class HideLlavaHf:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "llava_hf":
            raise ImportError("llava_hf is hidden in this test")


sys.meta_path.insert(0, HideLlavaHf())
try:
    import llava_hf  # noqa: F401
    raise SystemExit("llava_hf is importable")
except ImportError:
    pass
'''
TINY = dict(image_size=28, patch_size=14, text_hidden_size=64, vision_hidden_size=32)  # 4 image tokens per image
QUESTION = "What color is the shape?"
TOKENIZER_TEXT = "<s><|im_start|>user\n<image>\nA red circle, 你好 12<|im_end|>\n"
GREEDY = dict(max_new_tokens=20, min_new_tokens=20, do_sample=False)


def chat_inputs(processor, image, question=QUESTION):
    """Our processor's inputs for one image + question in the model's chat format."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(images=[image], text=prompt, add_special_tokens=False, return_tensors="pt")


def logits_of(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits[0].float()


def train_argv(output_dir, data_json, image_folder, **options):
    args = {"data_path": data_json, "image_folder": image_folder, "output_dir": output_dir,
            "per_device_train_batch_size": 4, "learning_rate": 1e-2, "logging_steps": 1, "report_to": "none",
            "save_strategy": "no", "torch_dtype": "float32", "lora_dropout": 0.0, "seed": 0, "disable_tqdm": True,
            "dataloader_num_workers": 0, "use_cpu": True, "max_steps": 2, **options}
    return [item for key, value in args.items() for item in (f"--{key}", str(value))]


# Loads folders the way a user without llava_hf does and runs each on one image + question: our format through
# the Auto classes with trust_remote_code ("remote"), a stock export with plain LlavaForConditionalGeneration
# ("stock"), or records what each Auto class says when our format is expected to be refused ("refused").
LOAD_AND_RUN = """
import sys

import torch
import transformers
from PIL import Image
from transformers import (AutoConfig, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer,
                          LlavaForConditionalGeneration)


def load_and_run(folder, kind, image_path, question, text):
    # in the stored dtype (float32 here): transformers before 4.56 has no `dtype=` argument
    remote = kind == "remote"
    if remote:
        model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True)
    else:
        model = LlavaForConditionalGeneration.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=remote)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=remote)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[Image.open(image_path)], text=prompt, add_special_tokens=False, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        logits = model(**inputs).logits[0]
        generated = model.generate(**inputs, max_new_tokens=20, min_new_tokens=20, do_sample=False)
    return {
        "classes": [type(x).__module__ + "." + type(x).__name__ for x in (model, processor, tokenizer)],
        "input_ids": inputs["input_ids"], "pixel_values": inputs["pixel_values"], "logits": logits,
        "generated": generated, "tokenizer_ids": tokenizer(text).input_ids, "padding_side": tokenizer.padding_side,
    }


def refusals(folder):
    said = {}
    for auto in (AutoConfig, AutoModelForImageTextToText, AutoProcessor):
        try:
            auto.from_pretrained(folder, trust_remote_code=True)
            said[auto.__name__] = None
        except Exception as error:
            said[auto.__name__] = f"{type(error).__name__}: {error}"
    return {"refusals": said}


image_path, question, text = sys.argv[1:4]
for folder, kind, out in zip(*[iter(sys.argv[4:])] * 3):
    outputs = refusals(folder) if kind == "refused" else load_and_run(folder, kind, image_path, question, text)
    torch.save({"transformers_version": transformers.__version__, **outputs}, out)
"""


def run_folders(run_without_llava_hf, folders: dict, image, tmp_path, pythonpath=None) -> dict:
    """`{name: (folder, kind)}` -> `{name: what LOAD_AND_RUN records}`, all in one Python without llava_hf (with
    another transformers release first on `pythonpath`, when given)."""
    image_path = tmp_path / "image.png"
    image.save(image_path)
    args = [item for name, (folder, kind) in folders.items() for item in (folder, kind, tmp_path / f"{name}.pt")]
    run_without_llava_hf(LOAD_AND_RUN, image_path, QUESTION, TOKENIZER_TEXT, *args, pythonpath=pythonpath)
    return {name: torch.load(tmp_path / f"{name}.pt") for name in folders}


def run_folder(run_without_llava_hf, folder, image, tmp_path, stock=False) -> dict:
    """What `LOAD_AND_RUN` gives for `folder` in a Python without llava_hf."""
    return run_folders(run_without_llava_hf, {"folder": (folder, "stock" if stock else "remote")}, image,
                       tmp_path)["folder"]


def our_outputs(model, processor, inputs) -> dict:
    """What `LOAD_AND_RUN` records, from our model and processor, computed in the same order: a dynamic-NTK rope
    keeps the length generation grew it to, so logits taken after a generation would differ."""
    with torch.no_grad():
        logits = model(**inputs).logits[0].float()
        generated = model.generate(**inputs, **GREEDY)
    return {"input_ids": inputs["input_ids"], "pixel_values": inputs["pixel_values"], "logits": logits,
            "generated": generated, "tokenizer_ids": processor.tokenizer(TOKENIZER_TEXT).input_ids,
            "padding_side": processor.tokenizer.padding_side}


def assert_runs_like_ours(outputs: dict, ours: dict) -> tuple[float, float]:
    """`outputs` of `run_folder` equal `our_outputs` on the same image + question: the same ids (prompt and
    tokenizer), padding side and greedy tokens, pixels within 1e-5, logits within 1e-4. Returns the pixel and logit
    differences."""
    for key in ("input_ids", "generated"):  # same prompt, ids and image-token count; same greedy tokens
        assert torch.equal(outputs[key], ours[key]), (key, outputs[key], ours[key])
    assert (outputs["tokenizer_ids"], outputs["padding_side"]) == (ours["tokenizer_ids"], ours["padding_side"])
    pixel_difference = (outputs["pixel_values"] - ours["pixel_values"]).abs().max().item()
    logit_difference = (outputs["logits"].float() - ours["logits"]).abs().max().item()
    assert pixel_difference < 1e-5, pixel_difference
    assert logit_difference < 1e-4, logit_difference
    return pixel_difference, logit_difference
