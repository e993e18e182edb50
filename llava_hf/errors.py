"""The one exception type for mistakes a user can fix (a wrong path, folder, option or value), and the exit
statuses of every entry point.

Entry points (`llava-hf`, `examples/*.py`) print it after `error:` (one line, or the list of bad samples a
`DataError` carries) and exit with status 2; library code raises it and never exits the process.
`llava_hf.data.DataError` is one for data. This module sits below `cli/` and `train/`, which both report errors.
"""

import sys

OK = 0
FAILED_CHECK = 1  # the command ran and found problems (e.g. `validate-data` on bad data)
USAGE_ERROR = 2  # bad input: a wrong path, option or value (argparse uses 2 for its own usage errors too)
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class UserInputError(ValueError):
    """A mistake the user can fix; the message names the offending file, option or sample."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (a library's errors can run to pages), or its type's name."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# What an entry point reports as one line instead of a traceback: our UserInputError/DataError (ValueErrors) and the
# ValueError/OSError that loaders raise naming a file or tensor.
USER_ERRORS = (ValueError, OSError)


def report_user_error(prog: str, error: BaseException) -> int:
    """Print `PROG: error: <message>` on stderr and return `USAGE_ERROR`: our own messages whole (a `DataError` lists
    the bad samples on the lines after the first), a library's first line only."""
    message = str(error).strip() if isinstance(error, UserInputError) else first_line(error)
    print(f"{prog}: error: {message or type(error).__name__}", file=sys.stderr)
    return USAGE_ERROR


__all__ = ["FAILED_CHECK", "INTERRUPTED", "OK", "USAGE_ERROR", "USER_ERRORS", "UserInputError", "first_line",
           "report_user_error"]
