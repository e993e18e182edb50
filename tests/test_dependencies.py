"""What `pip install -e .` must bring: every third-party module that llava_hf/ or examples/ imports is declared in
pyproject.toml (deptry checks it, as .ci/run does), no module outside the extras' own needs an extra to import, and
what does need one says which `pip install` brings it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llava_hf.cli.main import main as cli
from llava_hf.models.quantization import check_bits

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("bitsandbytes", "deepspeed", "gradio")  # the packages only the extras bring
NEEDS_AN_EXTRA = {"llava_hf.inference.web_demo"}  # modules that import one at the top (gradio: the `web` extra)


def run_deptry(*args) -> subprocess.CompletedProcess:
    pytest.importorskip("deptry", reason="deptry comes with the test extra: pip install -e '.[test]'")
    return subprocess.run([sys.executable, "-m", "deptry", ".", "--no-ansi", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_every_third_party_import_is_declared():
    result = run_deptry()
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_undeclared_import_fails_the_check(tmp_path):
    # The check above passing means something only if it can fail: drop one requirement the package imports.
    pyproject = (ROOT / "pyproject.toml").read_text()
    without_tqdm, removed = re.subn(r'^\s*"tqdm[^"]*",.*\n', "", pyproject, flags=re.M)
    assert removed == 1
    (tmp_path / "pyproject.toml").write_text(without_tqdm)
    result = run_deptry("--config", str(tmp_path / "pyproject.toml"))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "llava_hf/eval/mmbench_runner.py" in output and "'tqdm' imported but" in output


@pytest.mark.slow
def test_every_module_imports_without_the_extras():
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in EXTRAS)  # as if not installed
    code = (
        "import importlib, pkgutil, sys\n" + blocked
        + "import llava_hf\n"
        f"skip = {sorted(NEEDS_AN_EXTRA)!r}\n"
        "for module in pkgutil.walk_packages(llava_hf.__path__, 'llava_hf.'):\n"
        "    if module.name not in skip:\n"
        "        try:\n"
        "            importlib.import_module(module.name)\n"
        "        except ImportError as error:\n"
        "            print(module.name, error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_serve_without_gradio_names_the_web_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "llava_hf.inference.web_demo", raising=False)
    assert cli(["serve", "/no/such/model"]) == 2  # before the model is looked at
    err = capsys.readouterr().err.strip()
    assert err.startswith("llava-hf serve: error: ") and "pip install 'llava_hf[web]'" in err and "\n" not in err


def test_bits_without_bitsandbytes_names_the_qlora_extra(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the GPU check comes first
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ValueError, match=r"pip install 'llava_hf\[qlora\]'"):
        check_bits(4)
