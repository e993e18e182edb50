"""`llava-hf` console script: one subcommand per task, each implemented in its own module.

Subcommand modules import only the standard library at the top (the heavy imports are inside `run`), so
`llava-hf --help` stays fast and a missing optional dependency of one command does not break the others.
A user mistake raised by any command (`UserInputError`, a loader's ValueError/OSError naming a file) ends as one
`llava-hf COMMAND: error: ...` line with exit status 2; see `exit_codes`.
"""

import argparse
import importlib
import sys

from . import exit_codes

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llava-hf", description="LLaVA-style VLMs on transformers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        return module.run(args) or exit_codes.OK
    except KeyboardInterrupt:  # Ctrl-C while loading, or in a scripted run
        print(file=sys.stderr)
        return exit_codes.INTERRUPTED
    except exit_codes.USER_ERRORS as error:
        return exit_codes.report_user_error(f"llava-hf {args.command}", error)


if __name__ == "__main__":
    sys.exit(main())
