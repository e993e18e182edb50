"""Writing a whole output folder atomically: into a temporary sibling, renamed into place only when complete.

An interrupted or failed `llava-hf merge/export-hf/import-xtuner` never leaves a half-written OUT, and never
touches an existing OUT unless `--force` was given (checked before any model is loaded).
"""

import contextlib
import os
import shutil
import tempfile

from ..errors import UserInputError


def check_output_folder(out: str, force: bool, inputs=()) -> None:
    """Refuse an OUT that exists and is not empty (unless `force`), and one that would replace an input."""
    if os.path.isfile(out):
        raise UserInputError(f"{out} is a file, not a folder")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise UserInputError(f"{out} already exists and is not empty; choose another folder, or --force to replace it")
    real_out = os.path.realpath(out)
    for source in inputs:
        real_source = os.path.realpath(source)
        if real_source == real_out or real_source.startswith(real_out + os.sep):
            raise UserInputError(f"{out} would replace the input {source}; write to another folder")


@contextlib.contextmanager
def atomic_output_folder(out: str, force: bool = False, inputs=()):
    """Yield a fresh folder next to `out`; when the block succeeds it becomes `out` (an old `out` is removed only
    then), when it fails it is deleted."""
    check_output_folder(out, force, inputs)
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-", dir=parent)
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would make the result private
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if os.path.exists(out):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=parent)
        os.replace(out, os.path.join(old, "previous"))
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
