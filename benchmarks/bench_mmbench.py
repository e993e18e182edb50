"""MMBench evaluation throughput on this machine (not a test): rows/s of `run_mmbench` for the tiny random
LLaVA-InternLM2 on CPU, batch size 1 vs 8 (batched greedy generation with left padding).

    python benchmarks/bench_mmbench.py [--questions 16] [--max-new-tokens 8] [--batch-sizes 1 8]
"""

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

import llava_hf  # noqa: E402,F401
from llava_hf.demo.synthetic import make_synthetic_mmbench_tsv  # noqa: E402
from llava_hf.eval.mmbench_data import load_mmbench_tsv  # noqa: E402
from llava_hf.eval.mmbench_runner import run_mmbench  # noqa: E402
from llava_hf.testing import build_tiny_llava  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=16, help="synthetic questions (4 circular rows each)")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    model, processor = build_tiny_llava()
    model.eval()
    with tempfile.TemporaryDirectory() as scratch:
        data = load_mmbench_tsv(make_synthetic_mmbench_tsv(os.path.join(scratch, "dev.tsv"), args.questions))
        print(f"tiny LLaVA-InternLM2 ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
              f"{model.config.image_seq_length} image tokens), {len(data)} rows, max_new_tokens="
              f"{args.max_new_tokens}, torch threads={torch.get_num_threads()}")
        for batch_size in args.batch_sizes:
            work_dir = os.path.join(scratch, f"bs{batch_size}")
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the score table is not what we measure
                run_mmbench(model, processor, data, work_dir, batch_size=batch_size,
                            max_new_tokens=args.max_new_tokens)
            elapsed = time.perf_counter() - start
            print(f"batch size {batch_size:>2}: {len(data) / elapsed:7.1f} rows/s ({elapsed:.1f} s, "
                  f"including merge, scoring and the xlsx)")


if __name__ == "__main__":
    main()
