"""`llava-hf` console script: one subcommand per task, each implemented in its own module.

Subcommand modules import only the standard library at the top (the heavy imports are inside `run`), so
`llava-hf --help` stays fast and a missing optional dependency of one command does not break the others.
Every parser is a `llava_hf.argparsing.ArgumentParser` (the subcommand parsers `add_parser` makes are of the
same class): no abbreviations, flags spelled `--data_path` (`--data-path` works too), one-line usage errors.
A user mistake raised by any command (`UserInputError`, a loader's ValueError/OSError naming a file) ends as one
`llava-hf COMMAND: error: ...` line with exit status 2; see `llava_hf.errors`.
"""

import importlib
import os
import sys

from ..argparsing import ArgumentParser
from .. import errors

# name -> (module with `add_arguments(parser)` and `run(args)`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "chat": ("llava_hf.cli.chat", "chat with a model in the terminal (images, streaming, multi-turn)"),
    "serve": ("llava_hf.cli.serve", "web demo (Gradio): upload an image and chat"),
    "validate-data": ("llava_hf.cli.validate_data", "check LLaVA-format data (JSON, images, lengths) before training"),
    "mmbench": ("llava_hf.cli.mmbench", "MMBench: CircularEval scores on dev files, submission xlsx for test files"),
    "merge": ("llava_hf.cli.merge", "merge adapters / materialise backbones into one self-contained model folder"),
    "export-hf": ("llava_hf.cli.export_hf", "export to a stock transformers LlavaForConditionalGeneration folder"),
    "publish": ("llava_hf.cli.publish", "make a model folder self-contained, write its card, upload to the Hub"),
    "import-xtuner": ("llava_hf.cli.import_xtuner", "convert XTuner's LLaVA folders (projector/, *_adapter/)"),
}


def build_parser() -> tuple[ArgumentParser, dict[str, ArgumentParser]]:
    """The `llava-hf` parser and each subcommand's parser (same class, so the same rules)."""
    parser = ArgumentParser(prog="llava-hf", description="LLaVA-style VLMs on transformers.", epilog=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        subparsers[name] = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module_name).add_arguments(subparsers[name])
    return parser, subparsers


def run_command(name: str, args, prog: str) -> int:
    """Run subcommand `name` with parsed `args`: a user mistake is one `PROG: error: ...` line and exit status 2."""
    module = importlib.import_module(SUBCOMMANDS[name][0])
    try:
        return module.run(args) or errors.OK
    except KeyboardInterrupt:  # Ctrl-C while loading, or in a scripted run
        print(file=sys.stderr)
        return errors.INTERRUPTED
    except errors.USER_ERRORS as error:
        return errors.report_user_error(prog, error)


def main(argv: list[str] | None = None) -> int:
    parser, subparsers = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the subcommand's parser, so the error names the command (argparse names `llava-hf`)
        subparsers.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return errors.OK
    return run_command(args.command, args, f"llava-hf {args.command}")


def script_main(name: str, argv: list[str] | None = None) -> int:
    """An `examples/*.py` script that is subcommand `name`: same options and behaviour, its own name in messages."""
    prog = os.path.basename(sys.argv[0]) or name
    parser = ArgumentParser(prog=prog, description=f"{SUBCOMMANDS[name][1]} (the same as `llava-hf {name}`)")
    importlib.import_module(SUBCOMMANDS[name][0]).add_arguments(parser)
    return run_command(name, parser.parse_args(argv), prog)


if __name__ == "__main__":
    sys.exit(main())
