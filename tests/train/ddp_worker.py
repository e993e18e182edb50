"""Run by `torch.distributed.run` from test_distributed.py: one training run, recording on every rank
whether each micro-batch had images, so the test can check that a mixed step really happened."""

import json
import os
import sys

import llava_hf  # noqa: F401
from llava_hf.data.collator import LlavaDataCollator
from llava_hf.train import parse_args, train

seen = []
_call = LlavaDataCollator.__call__


def recording_call(self, features):
    batch = _call(self, features)
    seen.append("pixel_values" in batch)
    return batch


LlavaDataCollator.__call__ = recording_call

if __name__ == "__main__":
    trainer = train(*parse_args(sys.argv[1:]))
    rank = int(os.environ.get("RANK", 0))
    out = trainer.args.output_dir
    with open(os.path.join(out, f"modality_rank{rank}.json"), "w") as f:
        json.dump(seen, f)
