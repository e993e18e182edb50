#!/usr/bin/env bash
# Issue 21 on one GPU, in one call of at most ~9.5 minutes: correctness first (the varlen path trains like padded
# rows, InternLM2 and Llama with GQA; flash-attn and liger-kernel keep the numbers where installed), then the speed
# (`benchmarks/throughput.py --size 7b`: 7B stage 1, LoRA stage 2, QLoRA, 1.8B full finetune, and the GPU-free
# numbers), then, with the time left, regional compile's parity and resuming under DeepSpeed ZeRO-2/3
# (tests/gpu/resume_deepspeed.sh; a second call runs it alone when no time was left).
# Results land in OUT_DIR: parity.txt, throughput.txt + throughput.json, resume_summary.txt, logs.
#
#   bash tests/gpu/issue21.sh [OUT_DIR]   # installs the wheels of .whl/ first when that folder exists
#
# .whl/ (git-ignored) is filled beforehand on a machine with PyPI, from the project root: `../shared/device/wheels.sh
# all` (bitsandbytes, deepspeed, datasets; it builds deepspeed's wheel, so its python3 needs the `wheel` package:
# put a venv that has it first on PATH; in a git worktree, where .git is a file, run its download lines by hand),
# then liger-kernel, which the GPU image lacks (it has pytest, einops, msgpack, ninja, py-cpuinfo); ~48 MB in all:
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl liger-kernel==0.8.5
set -u
out=${1:-${OUT:-issue21_out}}
mkdir -p "$out"
start=$SECONDS
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "
import importlib
for name in ('torch', 'transformers', 'peft', 'accelerate', 'bitsandbytes', 'deepspeed', 'liger_kernel', 'flash_attn'):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as error:
        print(name, 'MISSING', type(error).__name__)
" | tee "$out/versions.txt"

parity=(python3 -m pytest -q -rs -s tests/gpu/test_varlen_parity.py)
timeout 120 "${parity[@]}" -k "not compile" 2>&1 | tail -40 | tee "$out/parity.txt"
timeout 400 python3 benchmarks/throughput.py --size 7b --json "$out/throughput.json" >"$out/throughput_full.log" 2>&1
echo "benchmark rc=$? after $((SECONDS - start)) s" | tee -a "$out/throughput.txt"
grep -v "^{'\|Warning\|warnings.warn\|^\s*$" "$out/throughput_full.log" | tail -80 >>"$out/throughput.txt"
left=$((560 - (SECONDS - start)))
if [ $left -gt 30 ]; then  # regional compile: inductor's first compile takes a while
  timeout $((left < 120 ? left : 120)) "${parity[@]}" -k compile 2>&1 | tail -15 | tee -a "$out/parity.txt"
fi
left=$((560 - (SECONDS - start)))
if [ $left -gt 60 ] && python3 -c "import deepspeed" 2>/dev/null; then
  timeout $left bash tests/gpu/resume_deepspeed.sh "$out"
  echo "resume rc=$?" >>"$out/resume_summary.txt"
else
  echo "resume under DeepSpeed: not run ($left s left, or no deepspeed)" | tee "$out/resume_summary.txt"
fi
gzip -f "$out/throughput_full.log"
echo "total $((SECONDS - start)) s"
