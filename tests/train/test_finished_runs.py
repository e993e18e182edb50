"""A finished run is never trained over by accident: the same command again stops with one line and leaves the
weights alone, `--overwrite_output_dir` trains again and replaces the model only once the new one is saved."""

import hashlib
import os

import pytest
from transformers import Trainer

from llava_hf.train.checkpointing import STAGING_DIR, saved_model_files
from llava_hf.train.run import main
from tests.train.conftest import common_args


def fingerprint(folder) -> dict[str, tuple[str, int]]:
    """(content hash, mtime) of each file of the saved model."""
    return {name: (hashlib.sha256((folder / name).read_bytes()).hexdigest(), os.stat(folder / name).st_mtime_ns)
            for name in saved_model_files(str(folder))}


def stage1(micro_base, image_data, out, **overrides):
    return common_args(out, image_data, stage="pretrain", llm_name_or_path=f"{micro_base}/llm",
                       vision_tower_name_or_path=f"{micro_base}/clip", max_steps=2, **overrides)


def test_the_same_command_after_a_finished_run_stops_with_one_line(micro_base, image_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(stage1(micro_base, image_data, out)) == 0
    finished = fingerprint(out)
    assert sorted(finished) == ["config.json", "model.safetensors"] and not os.path.exists(out / STAGING_DIR)
    capsys.readouterr()
    assert main(stage1(micro_base, image_data, out)) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"train.py: error: --output_dir {out} already holds a finished model (config.json, model.safetensors): pass "
        "--overwrite_output_dir to train again (the model there is replaced once the new one is saved), or give "
        "another --output_dir"]
    assert fingerprint(out) == finished


@pytest.mark.slow
def test_overwrite_replaces_the_model_only_once_the_new_one_is_saved(micro_base, image_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert main(stage1(micro_base, image_data, out)) == 0
    finished = fingerprint(out)

    # a crash while the new model is written leaves the old one as it was
    def crash_after_writing(self, output_dir=None, _internal_call=False):
        save_model(self, output_dir, _internal_call)
        raise OSError("disk full")

    save_model = Trainer.save_model
    monkeypatch.setattr(Trainer, "save_model", crash_after_writing)
    lora = stage1(micro_base, image_data, out, tune_llm="lora", lora_r=4, lora_alpha=8)
    with pytest.raises(OSError, match="disk full"):
        main(lora + ["--overwrite_output_dir"])
    assert fingerprint(out) == finished
    monkeypatch.undo()

    # saved: another kind of model (an adapter) replaces the stage-1 model, and none of the old model's files stay
    assert main(lora + ["--overwrite_output_dir"]) == 0
    assert sorted(saved_model_files(str(out))) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not os.path.exists(out / "model.safetensors") and not os.path.exists(out / STAGING_DIR)
    assert main(lora) == 2  # and it is a finished model in turn
