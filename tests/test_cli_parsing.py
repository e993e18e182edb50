"""The `llava-hf` parsers (and `examples/chat.py`, `examples/mmbench.py`): one flag spelling with its dashed alias,
no abbreviations, one-line usage errors. Parsing only: nothing here loads a model."""

import os
import subprocess
import sys

import pytest

from llava_hf.argparsing import ArgumentParser
from llava_hf.cli.main import SUBCOMMANDS, build_parser, main, script_main

LLAVA_HF = os.path.join(os.path.dirname(sys.executable), "llava-hf")  # the console script of this environment


def long_flags(parser):
    return [action for action in parser._actions if any(o.startswith("--") for o in action.option_strings)
            and action.dest != "help"]


def test_every_subcommand_parser_is_ours_without_abbreviations():
    parser, subparsers = build_parser()
    assert set(subparsers) == set(SUBCOMMANDS)
    for name, subparser in [("llava-hf", parser), *subparsers.items()]:
        assert isinstance(subparser, ArgumentParser), name
        assert subparser.allow_abbrev is False, name  # add_parser must not fall back to argparse's default


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_flag_has_both_spellings_and_help_shows_the_underscore_one(name):
    subparser = build_parser()[1][name]
    for action in long_flags(subparser):
        multiword = [o for o in action.option_strings if "-" in o[2:] or "_" in o]
        if not multiword:
            continue
        underscore = next(o for o in multiword if "_" in o)
        assert {underscore, underscore.replace("_", "-")} <= set(action.option_strings), action.option_strings
        assert action.option_strings[0] == underscore  # the spelling usage lines and errors show
    help_text = subparser.format_help()
    options = help_text.split("options:")[1]
    assert not [word for word in options.split() if word.startswith("--") and "-" in word[2:]
                and word.rstrip(",") != "--flag-name."], options  # only the epilog shows a dashed example


@pytest.mark.parametrize("argv", [
    ["chat", "m", "--max_new_tokens", "5", "--top_p", "0.5", "--torch_dtype", "bf16", "--no_streamer",
     "--prompt_template", "vicuna", "--visual_encoder", "c", "--stop_words", "a", "b"],
    ["mmbench", "m", "--data_path", "x.tsv", "--work_dir", "w", "--batch_size", "2", "--max_new_tokens", "3"],
    ["validate-data", "--data_path", "a.json", "--image_folder", "i", "--num_workers", "1", "--no_images"],
    ["merge", "base", "adapter", "out", "--is_clip", "--max_shard_size", "1GB"],
    ["import-xtuner", "out", "--llava", "x", "--visual_encoder", "c", "--keep_adapters"],
])
def test_the_dashed_spelling_parses_to_the_same_options(argv):
    parser = build_parser()[0]
    dashed = [word.replace("_", "-") if word.startswith("--") else word for word in argv]
    assert dashed != argv
    assert vars(parser.parse_args(dashed)) == vars(parser.parse_args(argv))


@pytest.mark.parametrize("argv, message", [
    # prefixes of --data_path and --max_new_tokens (the value after them is taken as MODEL)
    (["mmbench", "--data", "x.tsv"], "llava-hf mmbench: error: unrecognized arguments: --data"),
    (["chat", "m", "--max_new", "3"], "llava-hf chat: error: unrecognized arguments: --max_new 3"),
    (["chat", "--torch_dtype", "float13"], "llava-hf chat: error: argument --torch_dtype/--torch-dtype: invalid "
                                          "choice: 'float13' (choose from 'auto', 'bfloat16', 'float16', 'float32', "
                                          "'bf16', 'fp16', 'fp32')"),
    (["caht"], "llava-hf: error: argument COMMAND: invalid choice: 'caht' (choose from 'chat', 'serve', "
               "'validate-data', 'mmbench', 'merge', 'export-hf', 'publish', 'import-xtuner')"),
    (["validate-data"], "llava-hf validate-data: error: the following arguments are required: "
                        "--data_path/--data-path"),
])
def test_usage_errors_are_one_line_without_the_usage_block(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == message + "\n" and captured.out == ""


def test_an_example_script_names_itself_in_errors(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["examples/mmbench.py"])
    with pytest.raises(SystemExit) as exit_info:
        script_main("mmbench", ["--lang", "fr"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("mmbench.py: error: argument --lang: invalid choice: 'fr' "
                                       "(choose from 'auto', 'en', 'cn')\n")


def test_the_console_script_prints_an_invalid_choice_as_one_line():
    result = subprocess.run([LLAVA_HF, "mmbench", "--lang", "fr"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == ("llava-hf mmbench: error: argument --lang: invalid choice: 'fr' "
                             "(choose from 'auto', 'en', 'cn')\n")
    assert result.stdout == ""
