import json

from PIL import Image

from llava_hf.cli.main import main


def test_exit_code_and_report(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "images" / "a.jpg")
    good = [{"id": "1", "image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]}]
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.jsonl").write_text(json.dumps({**good[0], "id": "x", "image": "gone.jpg"}) + "\n")
    args = ["validate-data", "--image_folder", str(tmp_path / "images"), "--num_workers", "1"]
    assert main([*args, "--data_path", str(tmp_path / "good.json")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK")
    assert main([*args, "--data_path", str(tmp_path / "good.json"), "--data_path", str(tmp_path / "bad.jsonl")]) == 1
    out = capsys.readouterr().out
    assert "bad.jsonl sample #0 (id 'x'): image 'gone.jpg' not found" in out and "1 errors" in out


def test_mismatched_folder_count(tmp_path, capsys):
    args = ["validate-data", "--data_path", "a.json", "--data_path", "b.json", "--data_path", "c.json",
            "--image_folder", "x", "--image_folder", "y"]
    assert main(args) == 2
    assert "error: 3 --data_path values but 2 --image_folder values" in capsys.readouterr().err


def test_trimmed_turns_are_warnings_with_the_sample_id(tmp_path, capsys):
    samples = [{"id": "sharegpt_7", "conversations": [
        {"from": "gpt", "value": "Hello!"}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hi."},
        {"from": "human", "value": "Bye"}]}]
    (tmp_path / "text.json").write_text(json.dumps(samples))
    assert main(["validate-data", "--data_path", str(tmp_path / "text.json"), "--num_workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "text.json sample #0 (id 'sharegpt_7'): stripped 1 leading 'gpt' turn(s)" in out
    assert "text.json sample #0 (id 'sharegpt_7'): dropped the last 'human' turn" in out
    assert "0 errors, 2 warnings" in out and out.rstrip().endswith("OK")
