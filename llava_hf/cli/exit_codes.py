"""Exit statuses of every `llava-hf` command and `examples/` script, and how a user mistake is reported."""

import sys

from ..errors import UserInputError, first_line

OK = 0
FAILED_CHECK = 1  # the command ran and found problems (e.g. `validate-data` on bad data)
USAGE_ERROR = 2  # bad input: a wrong path, option or value (argparse uses 2 for its own usage errors too)
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

# What a command reports as one line instead of a traceback: our UserInputError/DataError (ValueErrors) and the
# ValueError/OSError that loaders raise naming a file or tensor.
USER_ERRORS = (ValueError, OSError)


def report_user_error(prog: str, error: BaseException) -> int:
    """Print `PROG: error: <message>` on stderr and return `USAGE_ERROR`: our own messages whole (a `DataError` lists
    the bad samples on the lines after the first), a library's first line only."""
    message = str(error).strip() if isinstance(error, UserInputError) else first_line(error)
    print(f"{prog}: error: {message or type(error).__name__}", file=sys.stderr)
    return USAGE_ERROR
