"""The one exception type for bad user input at inference time (paths, folders, options)."""


class UserInputError(ValueError):
    """A mistake the user can fix (missing image, wrong folder, impossible option).

    Command-line entry points print it as a single line and exit non-zero; they never show a traceback for it.
    The message names the offending file or option.
    """
