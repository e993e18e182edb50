"""`llava-hf publish`: the folder that would be uploaded is self-contained (loads without llava_hf, its card's usage
snippet runs), carries a model card built from the run, and holds no local paths. The upload call is patched."""

import json
import re
import shutil

import pytest
import yaml
from huggingface_hub import HfApi

from llava_hf.cli.main import main as cli
from llava_hf.inference import load_model_and_processor
from tests.export.shipping_helpers import chat_inputs, logits_of, run_folder


@pytest.mark.slow
def test_publish_uploads_a_self_contained_folder_with_a_model_card(trained, image, tmp_path, monkeypatch,
                                                                    run_without_llava_hf):
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        shutil.copytree(folder_path, tmp_path / "uploaded")
        calls.append(("upload_folder", repo_id, kwargs))
        return "https://huggingface.co/me/tiny-llava/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_branch", create_branch)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    mmbench = {"circular": {"overall": 61.25, "l2-category": {"coarse_perception": 70.0}},
               "vanilla": {"overall": 80.5, "l2-category": {"coarse_perception": 85.0}},
               "n_questions": 100, "data_path": "MMBench_DEV_EN.tsv"}
    (trained / "lora" / "mmbench_result.json").write_text(json.dumps(mmbench))
    try:
        assert cli(["publish", str(trained / "lora"), "--repo-id", "me/tiny-llava", "--private", "--revision", "v1",
                    "--dataset", "liuhaotian/LLaVA-Pretrain", "--torch-dtype", "float32"]) == 0
    finally:
        (trained / "lora" / "mmbench_result.json").unlink()
    assert [call[0] for call in calls] == ["create_repo", "create_branch", "upload_folder"]
    assert calls[0][2]["private"] is True and calls[2][2]["revision"] == "v1"

    uploaded = tmp_path / "uploaded"
    config_text = (uploaded / "config.json").read_text()
    assert str(trained) not in config_text and "/tmp" not in config_text  # no local paths on the Hub
    card = (uploaded / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "image-text-to-text"
    assert header["datasets"] == ["liuhaotian/LLaVA-Pretrain"] and header["license"] == "other"
    assert "| Overall | 61.2 | 80.5 |" in card or "| Overall | 61.3 | 80.5 |" in card
    assert "- Stage 1 (pretrain: projector alignment), `stage1`: steps 2" in card and "LoRA: r 4" in card
    assert "- Stage 2 (finetune: LoRA/QLoRA), `lora`: steps 2" in card

    model, processor = load_model_and_processor(str(trained / "lora"), torch_dtype="float32")
    expected = logits_of(model, chat_inputs(processor, image))
    remote = run_folder(run_without_llava_hf, uploaded, image, tmp_path)
    assert (remote["logits"] - expected).abs().max().item() < 1e-4

    # The card's usage snippet, as a Hub user runs it (repo name -> the uploaded folder).
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace("me/tiny-llava", str(uploaded))
    image.save(tmp_path / "photo.jpg")
    answer = run_without_llava_hf(snippet, cwd=tmp_path)
    assert isinstance(answer, str) and answer.endswith("\n")


def test_publish_rejects_a_bad_repo_id_before_loading(trained, capsys):
    assert cli(["publish", str(trained / "lora"), "--repo-id", "not a repo id!"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llava-hf publish: error: --repo-id 'not a repo id!'") and "\n" not in err
