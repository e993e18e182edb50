"""Run by test_checkpointing.py in a subprocess: one training run (the flags of `examples/train.py`) with faults
injected where the FAULTS environment variable says, by patches that live only in this test file:

    at-step:STEP:SIGNAL[:RANK]   send SIGNAL to this process while step STEP runs (on rank RANK only)
    in-save:STEP:SIGNAL          write half of the adapter weights of checkpoint-STEP, then send SIGNAL

SIGNAL is KILL, TERM or INT; several faults are separated by commas. With RESUME_AFTER_STOP=1 (the two-process
test) a run that a signal stopped is followed, in the same processes, by one with `--resume_from_checkpoint auto`,
and each rank writes what it saw to `<output_dir>/rank<R>.json`.
"""

import json
import os
import signal
import sys

import safetensors.torch  # patched before transformers and peft bind `save_file`

RANK = int(os.environ.get("RANK", 0))
FAULTS = [spec.split(":") for spec in os.environ.get("FAULTS", "").split(",") if spec]
active = True


def fire(kind: str, step: int) -> None:
    for fault in FAULTS:
        if active and fault[0] == kind and int(fault[1]) == step and (len(fault) < 4 or int(fault[3]) == RANK):
            os.kill(os.getpid(), getattr(signal, "SIG" + fault[2]))


_save_file = safetensors.torch.save_file


def save_file(tensors, filename, metadata=None):
    folder = os.path.basename(os.path.dirname(filename))
    step = int(folder.split("-")[1]) if folder.startswith("checkpoint-") else -1
    if any(fault[0] == "in-save" and int(fault[1]) == step for fault in FAULTS) and active:
        data = safetensors.torch.save(tensors, metadata=metadata)
        with open(filename, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
        fire("in-save", step)
    return _save_file(tensors, filename, metadata=metadata)


safetensors.torch.save_file = save_file

from llava_hf.train.checkpointing import MANIFEST_NAME  # noqa: E402
from llava_hf.train.run import main  # noqa: E402
from llava_hf.train.trainer import LlavaTrainer  # noqa: E402

record = {"runs": []}
_training_step, _train = LlavaTrainer.training_step, LlavaTrainer.train


def training_step(self, model, inputs, num_items_in_batch=None):
    step = self.state.global_step + 1
    record["runs"][-1]["steps"].append(step)
    fire("at-step", step)
    return _training_step(self, model, inputs, num_items_in_batch)


def train(self, resume_from_checkpoint=None, **kwargs):
    record["runs"].append({"resumed_from": resume_from_checkpoint, "steps": [], "exit": 0})
    return _train(self, resume_from_checkpoint=resume_from_checkpoint, **kwargs)


LlavaTrainer.training_step, LlavaTrainer.train = training_step, train

if __name__ == "__main__":
    argv = sys.argv[1:]
    if os.environ.get("RESUME_AFTER_STOP") != "1":
        sys.exit(main(argv))
    else:
        output_dir = argv[argv.index("--output_dir") + 1]
        code = main(argv)
        if code != 0:
            record["runs"][-1]["exit"] = code
            record["manifests_after_stop"] = {
                name: sorted(json.load(open(os.path.join(output_dir, name, MANIFEST_NAME)))["files"])
                for name in os.listdir(output_dir) if name.startswith("checkpoint-")}
            active = False
            main(argv + ["--resume_from_checkpoint", "auto"])
        with open(os.path.join(output_dir, f"rank{RANK}.json"), "w") as f:
            json.dump(record, f)
