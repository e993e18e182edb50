"""Training on a GPU in every launch mode (single GPU, ZeRO-2, ZeRO-3, FSDP) and reloading what it saved.

Runs `tests/gpu/launch_modes.sh` (about 10 minutes on one H100); skipped without CUDA, so CI never runs it.
DeepSpeed and bitsandbytes must be installed for the ZeRO and QLoRA steps.
"""

import os
import subprocess

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_every_launch_mode_trains_saves_and_reloads(tmp_path):
    result = subprocess.run(["bash", "tests/gpu/launch_modes.sh", str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=1800)
    summary = (tmp_path / "summary.txt").read_text() if (tmp_path / "summary.txt").exists() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert summary.count("rc=0") == 10 and "error" not in summary, summary
