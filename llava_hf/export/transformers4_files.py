"""A stock export that transformers 4.x reads as transformers 5 does, and the oldest release that reproduces it.

transformers 5 writes a few things in a stock LLaVA folder that 4.x reads differently or not at all. What is added
here is read by 5.x as before (and by vLLM, which reads through transformers):

- tokenizer_config.json: `tokenizer_class` is 5.x's `TokenizersBackend`, unknown to 4.x; `PreTrainedTokenizerFast`
  is the same class in both (an alias in 5.x), over the same `tokenizer.json`. 5.x lists the extra special tokens
  under `extra_special_tokens`, where 4.x expects a dict of named tokens: they go under `additional_special_tokens`,
  which 5.x moves back. `model_input_names` is written because 4.x's fast tokenizer would otherwise also return
  `token_type_ids`, which LLaVA's `generate` refuses.
- config.json: 4.x reads `rope_theta` and `rope_scaling`, not `rope_parameters`, and silently falls back to rope
  base 10000 (InternLM2 uses 1e6); both are written next to `rope_parameters` with the same values.
- processor_config.json: 5.x nests the image processor's settings in it, which 4.x before 4.5x passes to
  `LlavaProcessor` as a second `image_processor`; they move to preprocessor_config.json, where 4.x looks first and
  5.x looks when processor_config.json has none (the layout of the LLaVA folders 4.x wrote to the Hub).

`LlavaImageProcessor`, whose `do_pad` pads to a square with the mean colour as our processor does, first shipped in
transformers 4.49: older releases cannot compute our pixels, so 4.49 is the minimum the folder states.
"""

import json
import os

STOCK_MIN_TRANSFORMERS_VERSION = "4.49.0"
TOKENIZER_CLASS = "PreTrainedTokenizerFast"
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]


def add_transformers4_files(folder: str) -> None:
    """Make the stock folder `folder`, as transformers 5 saved it, readable by transformers 4.x."""
    _edit_json(os.path.join(folder, "tokenizer_config.json"), _transformers4_tokenizer_config)
    _edit_json(os.path.join(folder, "config.json"), _transformers4_rope_keys)
    processor_path = os.path.join(folder, "processor_config.json")
    processor_config = _read_json(processor_path)
    _write_json(os.path.join(folder, "preprocessor_config.json"), processor_config.pop("image_processor"))
    _write_json(processor_path, processor_config)


def _transformers4_tokenizer_config(config: dict) -> dict:
    extra = config.pop("extra_special_tokens", None) or []
    if extra:
        config["additional_special_tokens"] = list(extra)
    return {**config, "tokenizer_class": TOKENIZER_CLASS, "model_input_names": MODEL_INPUT_NAMES}


def _transformers4_rope_keys(config: dict) -> dict:
    text_config = config["text_config"]
    rope = dict(text_config.get("rope_parameters") or {})
    if "rope_theta" in rope:
        text_config["rope_theta"] = rope.pop("rope_theta")
    if rope.get("rope_type", "default") != "default":
        text_config["rope_scaling"] = rope  # 4.x's form: the rope type and its parameters, without the base
    return config


def _edit_json(path: str, edit) -> None:
    _write_json(path, edit(_read_json(path)))


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _write_json(path: str, content: dict) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write(json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
