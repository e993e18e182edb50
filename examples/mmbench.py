"""Evaluate a model on MMBench: dev files are scored (CircularEval), test files give the submission xlsx.

    python examples/mmbench.py                      # the demo model on the demo TSV
    python examples/mmbench.py MODEL --data_path MMBench_DEV_EN.tsv --work_dir work_dirs/mmbench_dev_en
    accelerate launch examples/mmbench.py MODEL --data_path MMBench_TEST_EN.tsv   # rows sharded over GPUs
    python examples/mmbench.py --predictions DIR/predictions.jsonl --data_path X.tsv --work_dir DIR  # rescore
"""

import sys

from llava_hf.cli.main import script_main

if __name__ == "__main__":
    sys.exit(script_main("mmbench"))
