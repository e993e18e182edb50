"""Evaluate a model on MMBench: dev files are scored (CircularEval), test files give the submission xlsx.

    python examples/mmbench.py                      # the demo model on the demo TSV
    python examples/mmbench.py MODEL --data-path MMBench_DEV_EN.tsv --work-dir work_dirs/mmbench_dev_en
    accelerate launch examples/mmbench.py MODEL --data-path MMBench_TEST_EN.tsv   # rows sharded over GPUs
    python examples/mmbench.py --predictions DIR/predictions.jsonl --data-path X.tsv --work-dir DIR  # rescore
"""

import sys

from llava_hf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["mmbench", *sys.argv[1:]]))
