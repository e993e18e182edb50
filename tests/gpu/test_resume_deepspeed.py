"""Killed and resumed with `--resume_from_checkpoint auto` under DeepSpeed ZeRO-2 and ZeRO-3 (a padding-free LoRA
run): runs `tests/gpu/resume_deepspeed.sh` (~3 minutes on one H100); skipped without CUDA or DeepSpeed."""

import importlib.util
import os
import subprocess

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed")]


def test_a_killed_packed_lora_run_resumes_under_zero2_and_zero3(tmp_path):
    result = subprocess.run(["bash", "tests/gpu/resume_deepspeed.sh", str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=1200)
    summary = (tmp_path / "resume_summary.txt").read_text() if (tmp_path / "resume_summary.txt").exists() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert summary.count(": ok") == 2, summary
