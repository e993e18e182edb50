"""Runs that a test compares number for number must sum in the same order. On the CPU that order depends on the
intra-op thread count: torch splits a large reduction or matmul into one chunk per thread. A pytest process runs
one thread per core by default, so a worker started with other settings sums differently, and a rounding
difference reads as a bug. So a worker whose numbers are compared computes with this process's thread count, and
training tests that compare with workers pin both to COMPARE_THREADS (workers run next to this process, and one
thread each keeps a 1-core machine from being oversubscribed)."""

import contextlib
import os

import torch

COMPARE_THREADS = 1


@contextlib.contextmanager
def compare_threads():
    """This process computes with COMPARE_THREADS intra-op threads until the block ends."""
    previous = torch.get_num_threads()
    torch.set_num_threads(COMPARE_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def compare_env(**extra) -> dict:
    """The environment of a worker whose numbers are compared with this process's: the same intra-op thread count
    (torch reads OMP_NUM_THREADS at start; accelerate leaves it alone once set), no tokenizer threads."""
    threads = str(torch.get_num_threads())
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
            **extra}
