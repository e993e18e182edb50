"""Which exceptions mean "the network or the Hub failed", as huggingface_hub and transformers raise them.

huggingface_hub speaks HTTP through its own library (httpx on 1.x, httpx2 on 2.x), and transformers' `load_image`
fetches URLs with the same one (5.17: `httpx`, 5.25: `huggingface_hub.utils.httpx`). So a refused connection or
a timeout arrives as that library's `HTTPError`, which is not an `OSError` and not the `httpx` a user may have
installed; an error status from the Hub as `HfHubHTTPError`; `HF_HUB_OFFLINE=1` as `OfflineModeIsEnabled`.

huggingface_hub is imported only when a network error is being handled, so `llava-hf --help` stays fast.
"""

import contextlib
import functools
import importlib

from .errors import UserInputError, first_line


@functools.cache
def network_errors() -> tuple[type[BaseException], ...]:
    """The exception types of a failed request to the Hub or to an image URL."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:  # huggingface_hub >= 1.32 names its HTTP library here, for downstream libraries
        from huggingface_hub.utils import httpx as http_library
    except ImportError:  # older 1.x releases all use httpx
        http_library = importlib.import_module("httpx")
    return (http_library.HTTPError, HfHubHTTPError, OfflineModeIsEnabled)


@contextlib.contextmanager
def network_errors_as_user_errors(what: str):
    """Inside the block a network or Hub error becomes a one-line `UserInputError`: `<what>: <its first line>`."""
    try:
        yield
    except network_errors() as error:
        raise UserInputError(f"{what}: {first_line(error)}") from None
