"""Checkpoints survive crashes and preemption: a stage-2 LoRA run killed (SIGKILL) in the middle of a save and of a
step, stopped by SIGTERM mid-epoch and by a second signal during the save, resumes with
`--resume_from_checkpoint auto` to the uninterrupted run's per-step losses and final weights; damaged checkpoints
are never picked; two gloo processes stop at the same step when only one got the signal, and resume together."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from llava_hf.errors import UserInputError
from llava_hf.train import parse_args, train
from llava_hf.train.checkpointing import (
    MANIFEST_NAME, STAGING_DIR, TrainingInterrupted, checkpoint_problem, clear_leftovers, list_checkpoints,
    resolve_resume, saved_model_files,
)
from llava_hf.train.trainer import LlavaTrainer
from tests.arithmetic import compare_env
from tests.train.conftest import common_args, losses
from tests.train.test_distributed import free_port


WORKER = os.path.join(os.path.dirname(__file__), "fault_worker.py")
ADAPTER = "adapter_model.safetensors"


def stage2_lora(micro_base, output_dir, image_data, **overrides):
    """16 images, batch 2: 8 steps an epoch; a checkpoint every 2 steps, only the newest kept. LoRA dropout draws
    from the RNG every step, so a resume that does not restore the RNG state gives other losses."""
    args = dict(stage="finetune", llm_name_or_path=f"{micro_base}/llm", vision_tower_name_or_path=f"{micro_base}/clip",
                tune_llm="lora", lora_r=4, lora_alpha=8, lora_dropout=0.5, per_device_train_batch_size=2, max_steps=12,
                save_strategy="steps", save_steps=2, save_total_limit=1)
    return common_args(output_dir, image_data, **{**args, **overrides})


def start(cmd, **env):
    """A subprocess in its own session, so that a hang (ranks that disagree) is killed with all its children."""
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=compare_env(**env))


def finish(process, timeout=240):
    try:
        _, log = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, log = process.communicate()
        pytest.fail(f"no exit within {timeout} s (a hang?): {log[-3000:]}")
    return process.returncode, log


def start_worker(argv, faults):
    return start([sys.executable, WORKER, *argv], FAULTS=faults)


def run_worker(argv, faults):
    return finish(start_worker(argv, faults))


def steps(output_dir):
    return [step for step, _ in list_checkpoints(output_dir)]


@pytest.mark.slow
def test_killed_and_stopped_runs_resume_to_the_uninterrupted_result(
        micro_base, image_data, tmp_path, monkeypatch, caplog, same_arithmetic):
    out = tmp_path / "run"
    argv = stage2_lora(micro_base, out, image_data)
    auto = argv + ["--resume_from_checkpoint", "auto"]

    # SIGKILL halfway through writing the adapter of checkpoint-6 (while the uninterrupted run trains here)
    killed_in_save = start_worker(argv, "in-save:6:KILL")
    reference = train(*parse_args(stage2_lora(micro_base, tmp_path / "uninterrupted", image_data)))
    assert steps(tmp_path / "uninterrupted") == [12]
    expected_losses, expected_weights = losses(reference), load_file(tmp_path / "uninterrupted" / ADAPTER)
    code, log = finish(killed_in_save)
    assert code == -signal.SIGKILL, log[-3000:]
    assert steps(out) == [4] and checkpoint_problem(str(out / "checkpoint-4")) is None
    assert os.path.isfile(out / STAGING_DIR / "checkpoint-6" / ADAPTER)  # the half-written one, never published

    # resumed; SIGTERM during step 7 (twice within a second, as launchers forward it: counts once), then SIGINT
    # while checkpoint-7 is written: the second signal ends the process at once
    code, log = run_worker(auto, "at-step:7:TERM,at-step:7:TERM,in-save:7:INT")
    assert code == 128 + signal.SIGINT, log[-3000:]
    assert "second stop signal (SIGINT): exiting now" in log
    assert f"resumed from {out}/checkpoint-4: step 4, epoch 0.50, 8 samples seen" in log
    assert steps(out) == [6]

    # resumed; SIGKILL in the middle of step 9 (after checkpoint-8)
    code, log = run_worker(auto, "at-step:9:KILL")
    assert code == -signal.SIGKILL, log[-3000:]
    assert f"resumed from {out}/checkpoint-6: step 6, epoch 0.75, 12 samples seen" in log
    assert steps(out) == [8] and not os.listdir(out / STAGING_DIR)

    # resumed in this process; SIGTERM in the middle of step 11 (mid-epoch): step 11 finishes and is saved
    def terminate_at_11(self, model, inputs, num_items_in_batch=None):
        if self.state.global_step + 1 == 11:
            os.kill(os.getpid(), signal.SIGTERM)
        return training_step(self, model, inputs, num_items_in_batch)

    training_step = LlavaTrainer.training_step
    monkeypatch.setattr(LlavaTrainer, "training_step", terminate_at_11)
    with caplog.at_level(logging.INFO, logger="llava_hf.train"), pytest.raises(TrainingInterrupted) as stop:
        train(*parse_args(auto))
    assert stop.value.exit_code == 128 + signal.SIGTERM
    assert f"stopped by SIGTERM after step 11: saved {out}/checkpoint-11" in caplog.text
    assert steps(out) == [11] and checkpoint_problem(str(out / "checkpoint-11")) is None
    assert not os.path.exists(out / ADAPTER), "an interrupted run must not write the final model"
    monkeypatch.undo()

    # damaged copies with higher steps: never picked by auto, and named when resumed by path
    shutil.copytree(out / "checkpoint-11", out / "checkpoint-12")
    with open(out / "checkpoint-12" / ADAPTER, "r+b") as f:
        f.truncate(100)
    shutil.copytree(out / "checkpoint-11", out / "checkpoint-13")
    os.remove(out / "checkpoint-13" / "optimizer.pt")
    with pytest.raises(UserInputError, match=rf"--resume_from_checkpoint {out}/checkpoint-12: incomplete checkpoint, "
                                         rf"{ADAPTER} is truncated \(100 of \d+ bytes\)$"):
        train(*parse_args(argv + ["--resume_from_checkpoint", str(out / "checkpoint-12")]))
    with pytest.raises(UserInputError, match="holds checkpoints .*--resume_from_checkpoint auto.*--overwrite_output_dir"):
        train(*parse_args(argv))

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="llava_hf.train"):
        trainer = train(*parse_args(auto))
    assert f"skipping incomplete checkpoint {out}/checkpoint-13: optimizer.pt is missing" in caplog.text
    assert f"skipping incomplete checkpoint {out}/checkpoint-12: {ADAPTER} is truncated" in caplog.text
    assert f"resumed from {out}/checkpoint-11: step 11, epoch 1.38, 22 samples seen" in caplog.text

    got = losses(trainer)  # steps 1-4 from the first run, 5-6 the second, 7-8 the third, 9-11 the fourth, 12 this one
    assert sorted(got) == sorted(expected_losses) == list(range(1, 13))
    for step, loss in expected_losses.items():
        assert abs(got[step] - loss) < 1e-6, (step, got[step], loss)
    weights = load_file(out / ADAPTER)
    assert weights.keys() == expected_weights.keys()
    for name, tensor in expected_weights.items():
        assert (weights[name] - tensor).abs().max() < 1e-6, name


def test_checkpoint_names_a_missing_or_truncated_file(tmp_path):
    folder = tmp_path / "checkpoint-160"  # as a kill leaves a folder written in place: a config and half the weights
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    assert checkpoint_problem(str(folder)).startswith("model.safetensors is truncated or corrupt")
    os.remove(folder / "model.safetensors")
    assert checkpoint_problem(str(folder)) == "trainer_state.json is missing"
    (folder / "trainer_state.json").write_text("{}")
    assert checkpoint_problem(str(folder)).startswith(f"no {MANIFEST_NAME}")
    assert checkpoint_problem(str(folder), require_manifest=False) is None  # named by the user: trusted
    (folder / MANIFEST_NAME).write_text(json.dumps({"files": {"config.json": 2, "trainer_state.json": 1}}))
    assert checkpoint_problem(str(folder)) == "trainer_state.json has 2 bytes, checkpoint_manifest.json says 1"
    (folder / MANIFEST_NAME).write_text(json.dumps({"files": {"config.json": 2, "weights.bin": 5}}))
    assert checkpoint_problem(str(folder)) == "weights.bin is missing"


def test_resume_flag_and_output_dir(tmp_path):
    def resolve(*flags):
        return resolve_resume(parse_args(["--output_dir", str(tmp_path), "--report_to", "none", *flags])[2])

    # only leftovers of an interrupted first save: auto starts from scratch, and no flag is needed
    (tmp_path / STAGING_DIR / "checkpoint-2").mkdir(parents=True)
    assert resolve("--resume_from_checkpoint", "auto") is None and resolve() is None
    (tmp_path / "checkpoint-2").mkdir()
    with pytest.raises(UserInputError, match=r"--output_dir .* already holds checkpoints \(checkpoint-2\)"):
        resolve()
    with pytest.raises(UserInputError, match="--resume_from_checkpoint .*missing: no such folder"):
        resolve("--resume_from_checkpoint", str(tmp_path / "missing"))
    with pytest.raises(UserInputError, match="give one of them, not both"):
        resolve("--resume_from_checkpoint", str(tmp_path / "checkpoint-2"), "--overwrite_output_dir", "true")
    assert resolve("--resume_from_checkpoint", "true") is None  # checkpoint-2 is incomplete: skipped
    assert resolve("--overwrite_output_dir", "true") is None

    _, _, args = parse_args(["--output_dir", str(tmp_path), "--report_to", "none", "--overwrite_output_dir", "true"])
    clear_leftovers(args)
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("files, finished", [
    (["config.json", "model.safetensors"], True),  # a full model, or stage 1's projector + the config naming the rest
    (["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors"], True),
    (["config.json", "pytorch_model.bin"], True),
    (["adapter_config.json", "adapter_model.safetensors", "tokenizer.json"], True),  # a LoRA run
    (["config.json", "tokenizer.json"], False),  # no weights: not a model
    (["model.safetensors"], False),
    (["adapter_config.json"], False),
], ids=["full", "sharded", "bin", "adapter", "config-only", "weights-only", "adapter-config-only"])
def test_a_finished_model_is_never_trained_over_without_overwrite(tmp_path, files, finished):
    for name in files:
        if name.endswith(".index.json"):
            shards = [f for f in files if f.startswith("model-")]
            (tmp_path / name).write_text(json.dumps({"weight_map": {f"w{i}": shard for i, shard in enumerate(shards)}}))
        else:
            (tmp_path / name).write_text("{}")

    def resolve(*flags):
        return resolve_resume(parse_args(["--output_dir", str(tmp_path), "--report_to", "none", *flags])[2])

    assert bool(saved_model_files(str(tmp_path))) == finished
    if not finished:
        assert resolve() is None and resolve("--resume_from_checkpoint", "auto") is None
        return
    refusal = (rf"^--output_dir {tmp_path} already holds a finished model \(.*\): pass --overwrite_output_dir to "
               r"train again .*, or give another --output_dir$")
    for flags in ((), ("--resume_from_checkpoint", "auto"), ("--resume_from_checkpoint", str(tmp_path / "x"))):
        with pytest.raises(UserInputError, match=refusal):
            resolve(*flags)
    assert resolve("--overwrite_output_dir", "true") is None
    assert resolve("--overwrite_output_dir", "true", "--resume_from_checkpoint", "auto") is None
    # checkpoints next to the model: a rerun with --overwrite_output_dir that was interrupted, continued by auto
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text("{}")
    (checkpoint / MANIFEST_NAME).write_text(json.dumps({"files": {"trainer_state.json": 2}}))
    assert resolve("--resume_from_checkpoint", "auto") == str(checkpoint)
    with pytest.raises(UserInputError, match="already holds checkpoints"):
        resolve()


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_stop_at_the_same_step_and_resume_from_the_same_checkpoint(
        micro_base, image_data, tmp_path, same_arithmetic):
    # SIGTERM reaches rank 1 only, during step 3: both ranks save checkpoint-3 and stop, then both resume from it
    args = dict(stage="finetune", llm_name_or_path=f"{micro_base}/llm", vision_tower_name_or_path=f"{micro_base}/clip",
                tune_llm="full", max_steps=5, optim="sgd", learning_rate=0.5)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), WORKER,
           *common_args(out, image_data, **args, per_device_train_batch_size=2)]
    code, log = finish(start(cmd, FAULTS="at-step:3:TERM:1", RESUME_AFTER_STOP="1"), timeout=180)
    assert code == 0, log[-4000:]
    assert f"resumed from {out}/checkpoint-3: step 3, epoch 0.75, 12 samples seen" in log
    for rank in (0, 1):
        record = json.loads((out / f"rank{rank}.json").read_text())
        stopped, resumed = record["runs"]
        assert stopped == {"resumed_from": None, "steps": [1, 2, 3], "exit": 128 + signal.SIGTERM}
        assert resumed == {"resumed_from": str(out / "checkpoint-3"), "steps": [4, 5], "exit": 0}
        assert list(record["manifests_after_stop"]) == ["checkpoint-3"]
        assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(record["manifests_after_stop"]["checkpoint-3"])
    assert steps(out) == [], "with --save_strategy no, the stop's checkpoint goes once the run is complete"

    single = common_args(tmp_path / "single", image_data, **args, per_device_train_batch_size=4)
    one = losses(train(*parse_args(single)))
    two = losses(str(out))
    assert sorted(two) == sorted(one) == [1, 2, 3, 4, 5]
    for step in one:
        assert abs(two[step] - one[step]) < 1e-4, (step, two[step], one[step])
