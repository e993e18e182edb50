"""checkpoint_io: recorded source paths (absolute or folder-relative), missing weights never come up random (also
under a Hub name), saved configs, and pickles read only as weights."""

import json
import os
import pickle
import shutil

import pytest
import torch
from transformers import AutoModelForImageTextToText

from llava_hf.models.llava_internlm2 import LlavaInternLM2ForConditionalGeneration
from llava_hf.testing import build_tiny_llava
from llava_hf.models.llava_internlm2.checkpoint_io import read_tensors, stored_tensor_names


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer_dir, tmp_path_factory):
    """(model, parts folder with llm/ and clip/): the model's config records both as absolute paths."""
    parts = tmp_path_factory.mktemp("checkpoint_io_parts")
    model, _ = build_tiny_llava(save_dir=str(parts), tokenizer_dir=tiny_tokenizer_dir, image_size=28,
                                text_hidden_size=64, vision_hidden_size=32)
    return model.eval(), parts


def inputs(model):
    ids = torch.tensor([[1, 5, 6] + [model.config.image_token_id] * model.config.image_seq_length + [7, 8]])
    return {"input_ids": ids, "pixel_values": torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(0))}


def save_stage1(model, folder, **config_changes):
    """A projector-only folder, as stage-1 training writes it, with some config fields changed."""
    model.save_pretrained(folder, state_dict={k: v for k, v in model.state_dict().items() if "projector" in k})
    config = json.loads((folder / "config.json").read_text())
    config.update(config_changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_sources_recorded_relative_to_the_folder_load_from_any_directory(tiny, tmp_path, monkeypatch):
    model, parts = tiny
    shutil.copytree(parts, tmp_path / "parts")
    save_stage1(model, tmp_path / "run" / "stage1", text_model_name_or_path="../../parts/llm",
                vision_model_name_or_path="../../parts/clip")
    monkeypatch.chdir(tmp_path / "parts")  # neither the folder nor its parent
    reloaded = LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path / "run" / "stage1")
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs(model)).logits, model(**inputs(model)).logits)


def test_a_missing_source_names_the_field_and_the_path(tiny, tmp_path):
    model, _ = tiny
    save_stage1(model, tmp_path / "absolute", text_model_name_or_path=str(tmp_path / "gone" / "llm"))
    with pytest.raises(FileNotFoundError, match=rf"text_model_name_or_path = {tmp_path}/gone/llm does not exist"):
        LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path / "absolute")
    save_stage1(model, tmp_path / "relative", vision_model_name_or_path="../clip")
    with pytest.raises(FileNotFoundError, match=r"config.vision_model_name_or_path = '../clip' does not exist "
                                                r"\(relative paths are read from .*relative\)"):
        LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path / "relative")


def hub_cache(folder, cache, repo_id):
    """`folder` as the Hub cache holds a downloaded `repo_id` (what `from_pretrained("owner/name")` reads)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)


def test_a_folder_without_backbones_never_loads_random_weights_from_a_hub_name(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, _ = tiny
    save_stage1(model, tmp_path / "stage1")
    model.save_pretrained(tmp_path / "full")
    hub_cache(tmp_path / "stage1", tmp_path / "cache", "me/stage1")
    hub_cache(tmp_path / "full", tmp_path / "cache", "me/full")
    for loader in (LlavaInternLM2ForConditionalGeneration, AutoModelForImageTextToText):
        with pytest.raises(ValueError, match=r"me/stage1: the checkpoint has no weights for \['language_model', "
                                             r"'vision_tower'\].*only for a local folder"):
            loader.from_pretrained("me/stage1", cache_dir=tmp_path / "cache")
    full = AutoModelForImageTextToText.from_pretrained("me/full", cache_dir=tmp_path / "cache")  # the same path works
    with torch.no_grad():
        assert torch.equal(full(**inputs(model)).logits, model(**inputs(model)).logits)


def test_a_local_folder_missing_other_weights_is_an_error_not_random_weights(tiny, tmp_path):
    model, _ = tiny
    state = {k: v for k, v in model.state_dict().items() if k != "multi_modal_projector.linear_2.bias"}
    model.save_pretrained(tmp_path, state_dict=state)
    with pytest.raises(ValueError, match=r"no weights for \['multi_modal_projector'\] \(1 tensors, e.g. "
                                         r"`multi_modal_projector.linear_2.bias`\); the folder is incomplete"):
        LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path)


def test_saved_configs_do_not_keep_the_training_use_cache(tiny, tmp_path):
    model, _ = tiny
    model.config.use_cache = False  # what the training setup sets
    try:
        model.save_pretrained(tmp_path)
        assert model.config.use_cache is False  # saving does not change the model in memory
    finally:
        del model.config.use_cache
    assert "use_cache" not in json.loads((tmp_path / "config.json").read_text())
    assert (tmp_path / "checkpoint_io.py").is_file()  # the modeling file imports it in a trust_remote_code folder


class NotATensor:
    pass


def test_a_stage1_folder_keeps_its_generation_settings(tiny, tmp_path):
    """The chat's stop tokens saved with a projector-only folder come back when its backbones are rebuilt (they were
    lost: an adapter over a stage-1 folder then generated past `<|im_end|>` where its merged folder stopped)."""
    model, _ = tiny
    model.generation_config.eos_token_id = [2, 7]
    save_stage1(model, tmp_path)
    reloaded = LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path)
    assert reloaded.generation_config.eos_token_id == [2, 7]


def test_pickled_weights_are_read_as_weights_only(tmp_path):
    torch.save({"model.0.weight": torch.ones(2, 2)}, tmp_path / "pytorch_model.bin")
    assert torch.equal(read_tensors(str(tmp_path))["model.0.weight"], torch.ones(2, 2))
    assert stored_tensor_names(str(tmp_path)) == {"model.0.weight"}
    torch.save({"model.0.weight": NotATensor()}, tmp_path / "evil.bin")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        read_tensors(str(tmp_path / "evil.bin"))
    os.remove(tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        read_tensors(str(tmp_path))
