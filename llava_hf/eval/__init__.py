"""Benchmarks for trained models: MMBench (dev scoring with CircularEval, test-split submission files)."""

from .answer_matching import MATCHER_NAME, can_infer
from .mmbench_data import MMBenchData, build_prompt, circular_rows, load_mmbench_tsv
from .mmbench_runner import run_mmbench, write_outputs
from .mmbench_scoring import format_report, score_mmbench
from .mmbench_submission import write_submission
from .predictions_io import load_predictions

__all__ = [
    "MATCHER_NAME",
    "MMBenchData",
    "build_prompt",
    "can_infer",
    "circular_rows",
    "format_report",
    "load_mmbench_tsv",
    "load_predictions",
    "run_mmbench",
    "score_mmbench",
    "write_outputs",
    "write_submission",
]
