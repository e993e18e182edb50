"""A wrong model path, as every command that loads a model reports it: a missing local folder is named at once, in
one line, without a Hub request (no waiting on Hub retries); a Hub id that fails gets one line from huggingface_hub's
own error types. No model is loaded here."""

import importlib
import json
import sys
import time

import pytest

from llava_hf.cli.main import main
from llava_hf.eval.mmbench_data import circular_rows
from llava_hf.inference import UserInputError, load_model_and_processor
from llava_hf.inference.loading import hub_error, is_hub_id
from tests.eval.mmbench_fixtures import question_frame, write_tsv

HUB_FUNCTIONS = ("hf_hub_download", "snapshot_download", "get_hf_file_metadata", "model_info", "file_exists",
                 "repo_exists", "list_repo_files")
WARM_IMPORTS = ("transformers", "peft", "llava_hf.inference.loading", "llava_hf.export.merge",
                "llava_hf.export.xtuner_import", "llava_hf.eval.mmbench_runner")
FAST_S = 5.0  # a Hub lookup retries for ~23 s without a network; checking a local path takes milliseconds


@pytest.fixture
def hub_requests(monkeypatch):
    """The Hub calls made during the test; each one also fails it (AssertionError is no user error, so it is
    never turned into an `error:` line). Patched wherever transformers, peft or llava_hf imported them from."""
    import huggingface_hub

    for name in WARM_IMPORTS:
        importlib.import_module(name)
    originals = {name: getattr(huggingface_hub, name) for name in HUB_FUNCTIONS}
    calls = []

    def forbidden(name):
        def call(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"unexpected Hub request: {name}{args}")
        return call

    for name in HUB_FUNCTIONS:
        monkeypatch.setattr(huggingface_hub, name, forbidden(name))
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith(("huggingface_hub.", "transformers", "peft", "llava_hf")):
            for name, original in originals.items():
                if vars(module).get(name) is original:  # vars: never wake a lazy module's __getattr__
                    monkeypatch.setattr(module, name, forbidden(name))
    return calls


@pytest.fixture
def work_dirs(tmp_path, monkeypatch):
    """A run folder with `work_dirs/` and an XTuner folder in it, as the cwd: `work_dirs/finetun` has the shape of
    a Hub id (`owner/name`), but `work_dirs` is here, so it is a mistyped local path."""
    (tmp_path / "work_dirs" / "xtuner").mkdir(parents=True)
    write_tsv(tmp_path / "dev.tsv", circular_rows(question_frame()))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv, message", [
    (["chat", "work_dirs/finetun", "--prompt", "hi"], "work_dirs/finetun: no such folder"),
    (["serve", "work_dirs/finetun"], "work_dirs/finetun: no such folder"),
    (["mmbench", "work_dirs/finetun", "--data_path", "dev.tsv", "--work_dir", "out"],
     "work_dirs/finetun: no such folder"),
    (["merge", "work_dirs/finetun", "out"], "work_dirs/finetun: no such folder"),
    (["import-xtuner", "out", "--llava", "work_dirs/xtunr"], "work_dirs/xtunr: no such folder (--llava)"),
    (["import-xtuner", "out", "--llava", "work_dirs/xtuner", "--llm", "work_dirs/internlm"],
     "work_dirs/internlm: no such folder (the LLM)"),
    (["chat", "work_dirs/internlm", "--visual_encoder", "clip", "--llava", "work_dirs/xtuner"],
     "work_dirs/internlm: no such folder (the LLM)"),
], ids=["chat", "serve", "mmbench", "merge", "import-xtuner-llava", "import-xtuner-llm", "chat-xtuner-triple"])
def test_every_command_names_a_missing_local_folder_at_once(argv, message, work_dirs, hub_requests, capsys):
    if argv[0] == "serve":
        pytest.importorskip("llava_hf.inference.web_demo")  # gradio, imported before the clock starts
    start = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert (code, err) == (2, f"llava-hf {argv[0]}: error: {message}\n")
    assert not hub_requests and elapsed < FAST_S, (hub_requests, elapsed)


@pytest.mark.parametrize("name", ["finetune", "/no/such/run", "./finetune", "../finetune", "work_dirs/a/b",
                                  "work_dirs/finetun"])
def test_names_that_are_not_hub_ids_are_local_paths(name, tmp_path, monkeypatch, hub_requests):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work_dirs").mkdir()
    assert not is_hub_id(name)
    with pytest.raises(UserInputError, match=f"^{name}: no such folder$"):
        load_model_and_processor(name)
    assert not hub_requests


def test_a_file_is_not_a_model_folder(tmp_path, hub_requests):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserInputError, match=r"model.safetensors: a file, not a folder$"):
        load_model_and_processor(str(tmp_path / "model.safetensors"))


def hub_exception(cls, message):
    """An instance of a huggingface_hub error type as the library raises it, without an HTTP response object (whose
    class depends on the huggingface_hub version)."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


def errors():
    from huggingface_hub import errors

    return errors


@pytest.mark.parametrize("error_type, message", [
    ("RepositoryNotFoundError", "no such folder here, and no such model repository on the Hub (or a private one"),
    ("GatedRepoError", "a gated Hub repository: accept its conditions on https://huggingface.co/owner/model"),
    ("RevisionNotFoundError", "the Hub repository has no such revision"),
    ("LocalEntryNotFoundError", "no such folder here, and not in the Hub cache, and the Hub cannot be reached"),
    ("EntryNotFoundError", "the Hub repository has no config.json"),
    ("HfHubHTTPError", "the Hub request failed (500 Server Error.)"),
])
def test_a_hub_id_that_fails_is_one_line_naming_it(error_type, message, monkeypatch):
    import huggingface_hub

    def download(repo_id, filename, **kwargs):
        raise hub_exception(getattr(errors(), error_type), "500 Server Error.\n\nRequest ID: abc\nmore detail")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(UserInputError) as error:
        load_model_and_processor("owner/model")
    assert str(error.value).startswith(f"owner/model: {message}") and "\n" not in str(error.value)


def test_offline_and_not_cached_is_one_line(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the real hf_hub_download, which then never connects
    with pytest.raises(UserInputError, match=r"^no-such-owner/no-such-model: no such folder here, and not in the "
                                             r"Hub cache, and the Hub cannot be reached \(offline"):
        load_model_and_processor("no-such-owner/no-such-model")


def test_a_hub_error_that_transformers_rewrapped_is_still_recognised():
    try:
        try:
            raise hub_exception(errors().RepositoryNotFoundError, "401 Client Error.")
        except OSError as cause:
            raise OSError("owner/model is not a local folder and is not a valid model identifier\n...") from cause
    except OSError as wrapped:
        assert str(hub_error("owner/model", wrapped)).startswith("owner/model: no such folder here, and no such "
                                                                  "model repository on the Hub")
    assert hub_error("owner/model", OSError("disk full")) is None  # not a Hub problem: the error stays as it was


def test_a_hub_model_that_is_not_llava_is_refused_before_its_weights(tmp_path, monkeypatch):
    import huggingface_hub

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "internlm2"}))
    fetched = []

    def download(repo_id, filename, **kwargs):
        fetched.append(filename)
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(UserInputError, match=r"^internlm/internlm2-chat-7b is not a LLaVA model folder: its "
                                             r"config.json has model_type 'internlm2' \(an LLM: add --visual_encoder"):
        load_model_and_processor("internlm/internlm2-chat-7b")
    assert fetched == ["config.json"]
