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


# Loads a folder the way a user without llava_hf does and runs it on one image + question: our format through
# the Auto classes with trust_remote_code, a stock export with plain LlavaForConditionalGeneration (no remote code).
LOAD_AND_RUN = """
import sys

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration

folder, kind, image_path, question, text, out = sys.argv[1:7]
remote = kind == "remote"
if remote:
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)
else:
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=remote)
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=remote)
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
inputs = processor(images=[Image.open(image_path)], text=prompt, add_special_tokens=False, return_tensors="pt")
model.eval()
with torch.no_grad():
    logits = model(**inputs).logits[0]
    generated = model.generate(**inputs, max_new_tokens=20, min_new_tokens=20, do_sample=False)
torch.save({
    "classes": [type(x).__module__ + "." + type(x).__name__ for x in (model, processor, tokenizer)],
    "input_ids": inputs["input_ids"], "pixel_values": inputs["pixel_values"], "logits": logits,
    "generated": generated, "tokenizer_ids": tokenizer(text).input_ids, "padding_side": tokenizer.padding_side,
}, out)
"""


def run_folder(run_without_llava_hf, folder, image, tmp_path, stock=False) -> dict:
    """What `LOAD_AND_RUN` gives for `folder` in a Python without llava_hf."""
    image_path, out = tmp_path / "image.png", tmp_path / "outputs.pt"
    image.save(image_path)
    run_without_llava_hf(LOAD_AND_RUN, folder, "stock" if stock else "remote", image_path, QUESTION, TOKENIZER_TEXT,
                         out)
    return torch.load(out)
