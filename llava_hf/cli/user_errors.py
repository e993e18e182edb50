"""How the model-shipping subcommands (`merge`, `export-hf`, `publish`, `import-xtuner`) report a mistake the user
can fix: one `llava-hf COMMAND: error: ...` line on stderr and exit status 2, like argparse's own usage errors,
never a traceback. The message names the file, option or tensor (see `llava_hf.inference.errors`)."""

import sys

USAGE_ERROR = 2
# UserInputError is a ValueError; the checkpoint readers raise ValueError / FileNotFoundError naming the tensor.
USER_ERRORS = (ValueError, OSError)


def report_user_error(command: str, error: BaseException) -> int:
    lines = str(error).strip().splitlines()
    print(f"llava-hf {command}: error: {lines[0] if lines else type(error).__name__}", file=sys.stderr)
    return USAGE_ERROR
