"""`llava-hf publish`: the folder that would be uploaded is self-contained (loads without llava_hf, its card's usage
snippet runs), carries a model card built from the run, and holds no local paths; `--dry_run OUT` writes exactly
that folder, lists it and touches no network. The upload calls are patched."""

import contextlib
import filecmp
import io
import json
import re
import shutil

import pytest
import yaml
from huggingface_hub import HfApi

from llava_hf.cli.main import main as cli
from llava_hf.inference import load_model_and_processor
from tests.export.shipping_helpers import chat_inputs, logits_of, run_folder

MMBENCH = {"circular": {"overall": 61.25, "l2-category": {"coarse_perception": 70.0}},
           "vanilla": {"overall": 80.5, "l2-category": {"coarse_perception": 85.0}},
           "n_questions": 100, "data_path": "MMBench_DEV_EN.tsv"}
HUB_CALLS = ("create_repo", "create_branch", "upload_folder", "create_commit", "preupload_lfs_files", "whoami",
             "repo_info")


@pytest.fixture(scope="module")
def publish_argv(trained, tmp_path_factory):
    """`llava-hf publish` of the LoRA run with a dataset and MMBench scores for the card, plus `options`."""
    mmbench = tmp_path_factory.mktemp("mmbench") / "mmbench_result.json"
    mmbench.write_text(json.dumps(MMBENCH))

    def argv(*options) -> list[str]:
        return ["publish", str(trained / "lora"), "--repo_id", "me/tiny-llava", "--dataset",
                "liuhaotian/LLaVA-Pretrain", "--mmbench_result", str(mmbench), "--torch-dtype", "float32", *options]

    return argv


@pytest.fixture(scope="module")
def dry_run(publish_argv, tmp_path_factory):
    """(OUT, what was printed) of `publish --dry_run OUT`, run offline, without a token, with every Hub call failing."""
    out = tmp_path_factory.mktemp("dry_run") / "out"

    def no_network(*args, **kwargs):
        raise AssertionError("a dry run called the Hub")

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()) as printed:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.delenv("HF_TOKEN", raising=False)
        patch.setenv("HF_HOME", str(out.parent / "hf_home"))  # no stored token either
        for name in HUB_CALLS:
            patch.setattr(HfApi, name, no_network)
        assert cli(publish_argv("--dry_run", str(out))) == 0
    return out, printed.getvalue()


@pytest.mark.slow
def test_dry_run_writes_a_self_contained_folder_with_a_model_card(dry_run, trained, image, tmp_path,
                                                                 run_without_llava_hf):
    out, printed = dry_run
    on_disk = sorted((p.relative_to(out).as_posix(), p.stat().st_size) for p in out.rglob("*") if p.is_file())
    assert [(line.split()[1], int(line.split()[0])) for line in printed.splitlines()] == on_disk  # one file a line
    assert {"README.md", "requirements.txt", "config.json", "model.safetensors", "modeling_llava_internlm2.py",
            "tokenizer.json", "training_summary.json"} <= {path for path, _ in on_disk}

    config_text = (out / "config.json").read_text()
    assert str(trained) not in config_text and "/tmp" not in config_text  # no local paths on the Hub
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "image-text-to-text"
    assert header["datasets"] == ["liuhaotian/LLaVA-Pretrain"] and header["license"] == "other"
    assert "| Overall | 61.2 | 80.5 |" in card or "| Overall | 61.3 | 80.5 |" in card
    assert "- Stage 1 (pretrain: projector alignment), `stage1`: steps 2" in card and "LoRA: r 4" in card
    assert "- Stage 2 (finetune: LoRA/QLoRA), `lora`: steps 2" in card

    model, processor = load_model_and_processor(str(trained / "lora"), torch_dtype="float32")
    expected = logits_of(model, chat_inputs(processor, image))
    remote = run_folder(run_without_llava_hf, out, image, tmp_path)
    assert (remote["logits"] - expected).abs().max().item() < 1e-4

    # The card's usage snippet, as a Hub user runs it (repo name -> the folder).
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace("me/tiny-llava", str(out))
    image.save(tmp_path / "photo.jpg")
    answer = run_without_llava_hf(snippet, cwd=tmp_path)
    assert isinstance(answer, str) and answer.endswith("\n")


@pytest.mark.slow
def test_publish_uploads_what_the_dry_run_wrote(dry_run, publish_argv, tmp_path, monkeypatch):
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
    assert cli(publish_argv("--private", "--revision", "v1")) == 0
    assert [call[0] for call in calls] == ["create_repo", "create_branch", "upload_folder"]
    assert calls[0][2]["private"] is True and calls[2][2]["revision"] == "v1"
    out, _ = dry_run
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert sorted(p.relative_to(tmp_path / "uploaded").as_posix() for p in (tmp_path / "uploaded").rglob("*")
                  if p.is_file()) == files
    _, mismatch, errors = filecmp.cmpfiles(out, tmp_path / "uploaded", files, shallow=False)
    assert mismatch == errors == []  # byte for byte


def test_publish_rejects_a_bad_repo_id_before_loading(trained, capsys):
    assert cli(["publish", str(trained / "lora"), "--repo_id", "not a repo id!"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llava-hf publish: error: --repo_id 'not a repo id!'") and "\n" not in err


def test_dry_run_never_overwrites_a_folder_silently(trained, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert cli(["publish", str(trained / "lora"), "--repo_id", "me/tiny-llava", "--dry_run", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists and is not empty" in err and "\n" not in err and (out / "keep.txt").is_file()
    assert cli(["publish", str(trained / "lora"), "--repo_id", "me/tiny-llava", "--force"]) == 2
    assert "without --dry_run nothing is written" in capsys.readouterr().err
