"""Plain environments of other transformers releases, for loading shipped folders as their users do.

An environment is a folder put first on PYTHONPATH in front of this interpreter's site-packages: `pip install --target`
of the release and of exactly the packages pip would change to install it here (its own huggingface_hub,
tokenizers, ...), found with `pip install --dry-run --report` against this interpreter. torch, numpy and the rest are
this interpreter's (transformers does not depend on torch, and a torch in the list is refused, so pip never fetches a
CUDA build), and llava_hf is hidden by the scripts that run there. Each release is built once per set of packages
this interpreter has (what is installed decides what must be added), into
`~/.cache/llava_hf-tests/transformers-VERSION-KEY` (LLAVA_HF_TEST_CACHE moves it), written to a temporary sibling
that is renamed into place when complete. Building needs the package index; when it cannot be reached the test is
skipped with the reason.
"""

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

CACHE = Path(os.environ.get("LLAVA_HF_TEST_CACHE", Path.home() / ".cache" / "llava_hf-tests"))
# A short network timeout: an unreachable index fails the test's setup in seconds, not pip's default minutes.
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--timeout", "10", "--retries", "1"]
NEVER_INSTALLED = ("torch", "nvidia-", "triton")  # this interpreter's torch is used; a CUDA wheel is never fetched


@cache
def released_versions() -> tuple[Version, ...] | str:
    """transformers releases the package index offers, newest first, or why they could not be listed."""
    result = subprocess.run([*PIP, "index", "versions", "transformers"], capture_output=True, text=True, timeout=120)
    listed = [line.split(":", 1)[1] for line in result.stdout.splitlines() if line.startswith("Available versions:")]
    if result.returncode != 0 or not listed:
        return _last_line(result.stderr)
    return tuple(sorted((Version(v.strip()) for v in listed[0].split(",")), reverse=True))


def newest_release(specifier: str) -> str:
    """The newest release within `specifier` (e.g. ">=5,<6"); skips the test when the index cannot be read."""
    versions = released_versions()
    if isinstance(versions, str):
        pytest.skip(f"package index unreachable, cannot tell the newest transformers{specifier}: {versions}")
    matching = [v for v in versions if v in SpecifierSet(specifier)]
    if not matching:
        pytest.skip(f"the package index lists no transformers{specifier}")
    return str(matching[0])


def transformers_env(version: str) -> Path:
    """The environment folder of transformers==`version` (built on first use)."""
    folder = CACHE / f"transformers-{version}-{_installed_packages_key()}"
    if (folder / "installed.json").is_file():
        return folder
    packages = _packages_to_install(version)
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=CACHE))
    try:
        if packages:
            install = subprocess.run([*PIP, "install", "--quiet", "--no-deps", "--no-compile", "--only-binary", ":all:",
                                      "--target", str(staging), *packages], capture_output=True, text=True, timeout=600)
            if install.returncode != 0:
                pytest.skip(f"cannot install {' '.join(packages)} (package index unreachable?): "
                            f"{_last_line(install.stderr)}")
        (staging / "installed.json").write_text(json.dumps(packages))
        try:
            staging.rename(folder)
        except OSError:  # another run built it meanwhile
            if not (folder / "installed.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _packages_to_install(version: str) -> list[str]:
    """`name==version` of what pip would install or change to give this interpreter transformers==`version`."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        result = subprocess.run([*PIP, "install", "--quiet", "--dry-run", "--only-binary", ":all:", "--report",
                                 str(report), f"transformers=={version}"], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.skip(f"cannot resolve transformers=={version} (package index unreachable?): "
                        f"{_last_line(result.stderr)}")
        items = json.loads(report.read_text())["install"]
    packages = [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in items]
    refused = [p for p in packages if p.lower().startswith(NEVER_INSTALLED)]
    if refused:
        raise RuntimeError(f"transformers=={version} would install {refused}; this interpreter's torch must serve")
    return packages


@cache
def _installed_packages_key() -> str:
    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    return hashlib.sha256("\n".join(installed).encode()).hexdigest()[:12]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
