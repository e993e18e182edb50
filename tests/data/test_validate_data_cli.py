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


def test_multi_image_problems_are_named_by_sample(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.new("RGB", (10, 10)).save(tmp_path / "images" / name)

    def sample(sample_id, images, question):
        return {"id": sample_id, "image": images,
                "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": "A"}]}

    samples = [sample("pair", ["a.jpg", "b.jpg"], "<image> or <image>?"),
               sample("more_placeholders", ["a.jpg", "b.jpg"], "<image> <image> <image>"),
               sample("fewer_placeholders", ["a.jpg", "b.jpg", "c.jpg"], "<image> <image>"),
               sample("second_missing", ["a.jpg", "gone.jpg"], "<image> <image>")]
    (tmp_path / "multi.json").write_text(json.dumps(samples))
    args = ["validate-data", "--data_path", str(tmp_path / "multi.json"), "--image_folder", str(tmp_path / "images"),
            "--num_workers", "1"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "multi.json sample #1 (id 'more_placeholders'): conversation has 3 '<image>' tokens but the sample has 2 images" in out
    assert "multi.json sample #2 (id 'fewer_placeholders'): conversation has 2 '<image>' tokens but the sample has 3 images" in out
    assert "multi.json sample #3 (id 'second_missing'): image 2 of 2: image 'gone.jpg' not found" in out
    assert "4 samples (4 with image, 4 of them with several, 0 text-only)" in out and "3 errors" in out
    assert "'pair'" not in out

    (tmp_path / "pairs.json").write_text(json.dumps(samples[:1]))
    args[2] = str(tmp_path / "pairs.json")
    assert main(args) == 0
    assert main([*args, "--prompt_template", "plain"]) == 1
    assert ("pairs.json sample #0 (id 'pair'): the 'plain' template (LLaVA's single-turn image captioning) takes one "
            "image; this sample has 2") in capsys.readouterr().out
