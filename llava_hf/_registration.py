"""Register our models with transformers' Auto classes when transformers is imported, not before.

Python has no public post-import hook, so a one-shot `sys.meta_path` finder wraps the loader of the
`transformers` package: once its `__init__` has run, `llava_hf.models` is imported. Nothing else is
intercepted, and the finder removes itself the first time it fires. `llava_hf.models` registers when imported.
"""

import importlib
import importlib.abc
import importlib.util
import sys


def register_with_transformers() -> None:
    """Register now when transformers is already imported; otherwise right after it is."""
    if "transformers" in sys.modules:
        _register()
    elif not any(isinstance(finder, _RegisterAfterTransformers) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterTransformers())


def _register() -> None:
    """`llava_hf.models` registers the models when it is imported. When transformers is being imported on behalf
    of `llava_hf.models` itself, that import is under way and registers when it completes."""
    if "llava_hf.models" not in sys.modules:
        importlib.import_module("llava_hf.models")


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)  # one shot; also lets the real finders below answer
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    """Delegates to transformers' own loader and registers our models once the package has executed."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _register()

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the real loader's
        return getattr(self.loader, name)
