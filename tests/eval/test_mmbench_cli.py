import json

from llava_hf.cli.main import main
from llava_hf.eval.predictions_io import write_jsonl
from tests.eval.mmbench_fixtures import HANDMADE_PREDICTIONS


def run_cli(*argv) -> int:
    return main(["mmbench", *argv])


def test_rescoring_a_predictions_file_needs_no_model(dev_tsv, tmp_path):
    predictions = tmp_path / "old.jsonl"
    write_jsonl(str(predictions), [{"index": i, "prediction": p} for i, p in HANDMADE_PREDICTIONS.items()])
    assert run_cli("--predictions", str(predictions), "--data_path", dev_tsv, "--work_dir", str(tmp_path / "out")) == 0
    result = json.loads((tmp_path / "out" / "mmbench_result.json").read_text())
    assert result["circular"]["overall"] == 50.0 and result["unparsable"] == 1
    assert (tmp_path / "out" / "mmbench_result.xlsx").exists()


def test_incomplete_predictions_file_is_a_one_line_error(dev_tsv, tmp_path, capsys):
    predictions = tmp_path / "old.jsonl"
    write_jsonl(str(predictions), [{"index": 1, "prediction": "B"}])
    assert run_cli("--predictions", str(predictions), "--data_path", dev_tsv, "--work_dir", str(tmp_path)) == 2
    assert "12 of 13 rows" in capsys.readouterr().err


def test_demo_without_training_tells_what_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli() == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "examples/train.py --stage pretrain" in error


def test_bad_input_fails_before_loading_a_model(dev_tsv, tmp_path, capsys):
    (tmp_path / "bad.tsv").write_text("index\tquestion\n1\tq\n")
    assert run_cli(str(tmp_path / "no_model"), "--data_path", str(tmp_path / "bad.tsv")) == 2
    assert "bad.tsv: missing column" in capsys.readouterr().err
    assert run_cli(str(tmp_path / "no_model"), "--data_path", dev_tsv, "--work_dir", str(tmp_path / "w"),
                   "--prompt_template", "nonsense") == 2
    assert "unknown prompt template 'nonsense'" in capsys.readouterr().err
    assert run_cli(str(tmp_path / "no_model")) == 2
    assert "--data_path TSV is required" in capsys.readouterr().err


def test_tiny_model_end_to_end_then_resume(dev_tsv, tiny_llava_dir, tmp_path, monkeypatch):
    work_dir = str(tmp_path / "run")
    options = ("--data_path", dev_tsv, "--work_dir", work_dir, "--max_new_tokens", "2", "--batch_size", "8")
    assert run_cli(tiny_llava_dir, *options) == 0
    result = json.loads((tmp_path / "run" / "mmbench_result.json").read_text())
    assert (result["n_questions"], result["n_rows"]) == (4, 13)
    settings = json.loads((tmp_path / "run" / "run_settings.json").read_text())
    assert settings["max_new_tokens"] == 2

    def no_generation(*args, **kwargs):
        raise AssertionError("every row was already predicted")

    monkeypatch.setattr("llava_hf.eval.mmbench_runner.generate_batch", no_generation)
    assert run_cli(tiny_llava_dir, *options) == 0
    assert json.loads((tmp_path / "run" / "mmbench_result.json").read_text()) == result
