"""What importing the package costs and pulls in: `import llava_hf` and `llava-hf --help` never import torch, the
models still register with transformers, and the model code never depends on the demo or the test helpers."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_cli_help_does_not_import_torch():
    out = run_python(
        "import sys, contextlib, io\n"
        "from llava_hf.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as help_text:\n"
        "    main([])\n"
        "assert 'merge' in help_text.getvalue()\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    assert out == "[]"


@pytest.mark.slow
def test_models_register_when_transformers_is_imported_later():
    out = run_python(
        "import llava_hf\n"
        "from transformers import AutoConfig, AutoModelForCausalLM\n"
        "print(type(AutoConfig.for_model('llava_internlm2')).__name__, type(AutoConfig.for_model('internlm2')).__name__)"
    )
    assert out == "LlavaInternLM2Config InternLM2Config"


@pytest.mark.slow
def test_models_register_when_transformers_was_imported_first():
    out = run_python(
        "import transformers\n"
        "import llava_hf\n"
        "from transformers import AutoConfig\n"
        "print(type(AutoConfig.for_model('llava_internlm2')).__name__)"
    )
    assert out == "LlavaInternLM2Config"


@pytest.mark.slow
def test_model_code_imports_neither_the_demo_nor_the_test_helpers():
    out = run_python(
        "import sys\n"
        "import llava_hf.models.llava_internlm2.builder, llava_hf.inference.loading, llava_hf.export.merge\n"
        "print(sorted(m for m in sys.modules if m.startswith(('llava_hf.testing', 'llava_hf.demo'))))"
    )
    assert out == "[]"


# Which top-level parts of the package each part may import (anywhere in a module, function bodies included):
# lower layers never reach up, so e.g. the loader can be used without the export code, and training without the CLI.
NEVER_IMPORTS = {
    "models": ("data", "train", "eval", "inference", "export", "cli", "demo", "testing"),
    "data": ("train", "eval", "inference", "export", "cli"),
    "train": ("cli", "export", "eval"),
    "inference": ("export", "cli", "train"),
    "export": ("cli", "train"),
    "eval": ("cli", "train", "export"),
}


def imported_parts(path: Path) -> set[str]:
    """The `llava_hf.<part>` packages a module imports, relative imports resolved."""
    package = list(path.relative_to(ROOT).parent.parts)  # llava_hf/train/run.py -> ["llava_hf", "train"]
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] if node.level else [])
            module = ".".join(filter(None, [base, node.module]))
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        parts |= {name.split(".")[1] for name in names if name.startswith("llava_hf.")}
    return parts


def test_each_layer_imports_only_the_layers_below_it():
    offences = []
    for part, forbidden in NEVER_IMPORTS.items():
        for path in sorted((ROOT / "llava_hf" / part).rglob("*.py")):
            offences += [f"{path.relative_to(ROOT)} imports llava_hf.{other}"
                         for other in sorted(imported_parts(path) & set(forbidden))]
    assert offences == []
