"""The one exception type for mistakes a user can fix (a wrong path, folder, option or value).

Entry points (`llava-hf`, `examples/*.py`) print it as a single `error:` line naming the file or option and exit
with status 2; library code raises it and never exits the process. `llava_hf.data.DataError` is one for data.
"""


class UserInputError(ValueError):
    """A mistake the user can fix; the message names the offending file, option or sample."""


__all__ = ["UserInputError"]
