"""`llava-hf chat` end to end (in-process): answers on stdout only, scripted turns, one-line errors."""

import io
import sys

import pytest
import torch
from PIL import Image

from llava_hf.cli.main import main

GREEDY_ARGS = ["--temperature", "0", "--max_new_tokens", "10"]


def run_chat(monkeypatch, capsys, argv, stdin_text=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))  # not a terminal: each line is a turn
    code = main(["chat", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_prompt_prints_exactly_the_greedy_generate_answer(monkeypatch, capsys, tiny_llava, tiny_llava_dir,
                                                          image_files, full_history_answer):
    model, processor = tiny_llava
    image = Image.open(image_files[0]).convert("RGB")
    expected = full_history_answer(model, processor, [("what color is it", [image], None)])
    code, out, err = run_chat(monkeypatch, capsys, [tiny_llava_dir, "--image", image_files[0],
                                                    "--prompt", "what color is it", *GREEDY_ARGS])
    assert code == 0
    assert out == expected + "\n"
    assert "<|im_end|>" not in out and "<s>" not in out


def test_no_streamer_prints_the_same_answer(monkeypatch, capsys, tiny_llava_dir, image_files):
    argv = [tiny_llava_dir, "--image", image_files[0], "--prompt", "what color is it", *GREEDY_ARGS]
    streamed = run_chat(monkeypatch, capsys, argv)[1]
    whole = run_chat(monkeypatch, capsys, [*argv, "--no_streamer"])[1]
    assert whole == streamed


def test_stdin_lines_are_turns_of_one_conversation(monkeypatch, capsys, tiny_llava, tiny_llava_dir, image_files,
                                                   full_history_answer):
    model, processor = tiny_llava
    red, blue = (Image.open(path).convert("RGB") for path in image_files)
    script = f"what color is it\n\nand the shape\n/image {image_files[1]}\ncompare them\n"
    code, out, err = run_chat(monkeypatch, capsys, [tiny_llava_dir, "--image", image_files[0], *GREEDY_ARGS],
                              script)
    assert code == 0
    first, second, third = out.split("\n")[:3]
    assert out.count("\n") == 3  # answers only, one line each (the tiny model never emits a newline here)
    assert first == full_history_answer(model, processor, [("what color is it", [red], None)])
    assert second == full_history_answer(model, processor, [("what color is it", [red], first),
                                                            ("and the shape", [], None)])
    assert third == full_history_answer(model, processor, [("what color is it", [red], first),
                                                           ("and the shape", [], second),
                                                           ("compare them", [blue], None)])


def test_several_images_in_the_first_turn_and_mid_conversation(monkeypatch, capsys, tiny_llava, tiny_llava_dir,
                                                               image_files, full_history_answer):
    model, processor = tiny_llava
    red, blue = (Image.open(path).convert("RGB") for path in image_files)
    encoded = []
    hook = model.vision_tower.register_forward_hook(lambda module, args, output: encoded.append(args[0].shape[0]))
    monkeypatch.setattr("llava_hf.inference.load_model_and_processor", lambda *args, **kwargs: (model, processor))
    script = f"compare them\n/image {image_files[1]}\n/image {image_files[0]}\nand these two\n"
    try:
        code, out, _ = run_chat(monkeypatch, capsys, [tiny_llava_dir, "--image", image_files[0], "--image",
                                                      image_files[1], *GREEDY_ARGS], script)
    finally:
        hook.remove()
    assert code == 0
    first, second = out.splitlines()
    assert first == full_history_answer(model, processor, [("compare them", [red, blue], None)])
    assert second == full_history_answer(model, processor, [("compare them", [red, blue], first),
                                                            ("and these two", [blue, red], None)])
    assert encoded == [2, 2]  # each turn encodes its own two images once; the first two stay in the KV cache


def test_reset_and_exit_commands(monkeypatch, capsys, tiny_llava_dir):
    code, out, _ = run_chat(monkeypatch, capsys, [tiny_llava_dir, *GREEDY_ARGS],
                            "hello\n/reset\nhello\n/exit\nnever answered\n")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]  # after /reset the same question gets the same answer


def test_sampling_options_reach_generate(monkeypatch, capsys, tiny_llava_dir):
    argv = [tiny_llava_dir, "--prompt", "hello", "--max_new_tokens", "8", "--temperature", "5", "--top_k", "50",
            "--top_p", "0.99"]
    first = run_chat(monkeypatch, capsys, [*argv, "--seed", "1"])[1]
    again = run_chat(monkeypatch, capsys, [*argv, "--seed", "1"])[1]
    greedy = run_chat(monkeypatch, capsys, [tiny_llava_dir, "--prompt", "hello", "--max_new_tokens", "8",
                                            "--temperature", "0"])[1]
    assert first == again  # --seed makes sampling reproducible
    assert first != greedy  # and temperature 5 really samples


@pytest.mark.parametrize("case", ["missing image", "unreadable image", "not llava", "4-bit without cuda",
                                  "bad template", "no demo model"])
def test_user_errors_are_one_line_and_exit_2(monkeypatch, capsys, tmp_path, tiny_llava_dir,
                                                   tiny_llava_parts, case):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    argv, expected = {
        "missing image": ([tiny_llava_dir, "--image", str(tmp_path / "nope.jpg")], "image not found: "),
        "unreadable image": ([tiny_llava_dir, "--image", str(broken)], "broken.png"),
        "not llava": ([str(tiny_llava_parts[2] / "llm")], "is not a LLaVA model folder"),
        "4-bit without cuda": ([tiny_llava_dir, "--bits", "4"], "--bits 4 needs a CUDA GPU"),
        "bad template": ([tiny_llava_dir, "--prompt_template", "nonsense"], "unknown prompt template 'nonsense'"),
        "no demo model": ([], "train it first"),
    }[case]
    monkeypatch.chdir(tmp_path)  # no work_dirs/demo here
    code, out, err = run_chat(monkeypatch, capsys, [*argv, "--prompt", "hi"])
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("llava-hf chat: error: ") and expected in err
