"""The one exception type for mistakes a user can fix (a wrong path, folder, option or value).

Entry points (`llava-hf`, `examples/*.py`) print it after `error:` (one line, or the list of bad samples a
`DataError` carries) and exit with status 2; library code raises it and never exits the process.
`llava_hf.data.DataError` is one for data.
"""


class UserInputError(ValueError):
    """A mistake the user can fix; the message names the offending file, option or sample."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (a library's errors can run to pages), or its type's name."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


__all__ = ["UserInputError", "first_line"]
