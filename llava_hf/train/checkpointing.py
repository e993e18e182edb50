"""Checkpoints that are complete or absent, the latest complete one, and save-and-stop on SIGTERM/SIGINT.

HF `Trainer` writes `checkpoint-N` in place and prunes older ones (`save_total_limit`) in the same call, so a
run killed mid-save leaves a half-written folder under the final name, perhaps after the last complete one was
deleted. `LlavaTrainer` has Trainer write into `<output_dir>/.checkpoint-staging/checkpoint-N` instead; then
every rank flushes what it wrote (`fsync`), all ranks wait for each other, and the process that saves
(`args.should_save`: one per run, or one per node with `save_on_each_node`) lists every file with its size in
`checkpoint_manifest.json`, renames the folder into place and only then prunes old checkpoints. A folder is
trusted when its manifest matches its files, so one damaged later (a file deleted, a copy cut short) is
caught too. Leftovers of interrupted saves stay in the staging folder, which the next run deletes.

The rules for what an output folder may hold before a run starts live here too (`resolve_resume`): a finished
model is never trained over without `--overwrite_output_dir`, and the final model is also written into the
staging folder and moved into place whole (`save_final_model`), so it replaces an earlier one only once saved.
"""

import contextlib
import json
import logging
import math
import os
import re
import shutil
import signal
import threading
import time
import zipfile

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from transformers import TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, has_length
from transformers.utils import ADAPTER_CONFIG_NAME, ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME, CONFIG_NAME

from ..errors import UserInputError
from ..models.llava_internlm2.checkpoint_io import SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME, weight_files

logger = logging.getLogger("llava_hf.train")

MANIFEST_NAME = "checkpoint_manifest.json"
STAGING_DIR = ".checkpoint-staging"
FINAL_MODEL_DIR = "final-model"  # in STAGING_DIR while the final model is written
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


# ---- writing ----------------------------------------------------------------------------------------------------


def staging_paths(run_dir: str, global_step: int) -> tuple[str, str]:
    """(where Trainer writes the checkpoint of this step, where it is published)."""
    name = f"{PREFIX_CHECKPOINT_DIR}-{global_step}"
    return os.path.join(run_dir, STAGING_DIR, name), os.path.join(run_dir, name)


def discard_stale(staged: str, args, accelerator) -> None:
    """Delete what an interrupted save of this same step left, before any rank writes into the folder again."""
    if args.should_save and os.path.exists(staged):
        shutil.rmtree(staged)
    accelerator.wait_for_everyone()


def publish_checkpoint(staged: str, final: str, args, state, accelerator) -> None:
    """Run on every rank once Trainer has written `staged`: flush, wait for all, then one process publishes."""
    if state.best_model_checkpoint == staged:  # Trainer recorded the folder it wrote to
        state.best_model_checkpoint = final
        if args.should_save:
            state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
    accelerator.wait_for_everyone()
    if not args.should_save:  # on a filesystem shared by nodes each rank flushes what it wrote (shards, RNG states)
        _fsync_tree(staged)
    accelerator.wait_for_everyone()
    if args.should_save:
        _write_manifest(staged)  # flushes every file first
        if os.path.exists(final):  # an earlier run's checkpoint of the same step (or a damaged one)
            _discard(final)
        os.rename(staged, final)
        _fsync_dir(os.path.dirname(final))
        prune_checkpoints(os.path.dirname(final), args.save_total_limit, keep=(final, state.best_model_checkpoint))
    accelerator.wait_for_everyone()


def prune_checkpoints(output_dir: str, save_total_limit: int | None, keep=()) -> None:
    """Delete the oldest checkpoints beyond `save_total_limit`, never one in `keep` (the new one, the best one)."""
    if not save_total_limit or save_total_limit <= 0:
        return
    checkpoints = [path for _, path in list_checkpoints(output_dir)]
    keep = {os.path.abspath(path) for path in keep if path}
    remaining = len(checkpoints)
    for path in checkpoints:
        if remaining <= max(save_total_limit, len(keep)):
            break
        if os.path.abspath(path) not in keep:
            logger.info("deleting %s (--save_total_limit %d)", path, save_total_limit)
            _discard(path)
            remaining -= 1


def clear_leftovers(args) -> None:
    """Before step 1: delete the staging folder (what interrupted saves left) and, with --overwrite_output_dir,
    the checkpoints already in output_dir."""
    if args.overwrite_output_dir:
        delete_checkpoints(args, "--overwrite_output_dir")
    if args.should_save:
        shutil.rmtree(os.path.join(args.output_dir, STAGING_DIR), ignore_errors=True)
    PartialState().wait_for_everyone()


def delete_checkpoints(args, reason: str) -> None:
    """Delete every checkpoint in output_dir (on the saving process(es); every rank waits)."""
    if args.should_save:
        for _, path in list_checkpoints(args.output_dir):
            logger.info("deleting %s (%s)", path, reason)
            _discard(path)
    PartialState().wait_for_everyone()


def save_final_model(trainer) -> None:
    """`trainer.save_model()` into the staging folder, then moved into `output_dir`: a model already there (a run
    with --overwrite_output_dir) is replaced only once the new one is whole, and its files that the new save does
    not write (an adapter where now a full model is saved, shards of another count) go, so one model remains.
    Called on every rank (sharded saves gather on all of them); the saving process moves the files."""
    args = trainer.args
    staged = os.path.join(args.output_dir, STAGING_DIR, FINAL_MODEL_DIR)
    discard_stale(staged, args, trainer.accelerator)
    trainer.save_model(staged)
    trainer.accelerator.wait_for_everyone()
    _fsync_tree(staged)
    trainer.accelerator.wait_for_everyone()
    if args.should_save:
        new = set(os.listdir(staged))
        for name in saved_model_files(args.output_dir):
            if name not in new:
                os.remove(os.path.join(args.output_dir, name))
        # the configs last: until they are in place, a config names the old model's weights or none
        for name in sorted(new, key=lambda name: name in (CONFIG_NAME, ADAPTER_CONFIG_NAME)):
            target = os.path.join(args.output_dir, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staged, name), target)
        os.rmdir(staged)
        with contextlib.suppress(OSError):  # the staging folder too, unless checkpoints left something there
            os.rmdir(os.path.dirname(staged))
        _fsync_dir(args.output_dir)
    trainer.accelerator.wait_for_everyone()


def _files(folder: str) -> list[str]:
    """Every file under `folder`, relative to it."""
    found = []
    for root, _, names in os.walk(folder):
        found.extend(os.path.relpath(os.path.join(root, name), folder) for name in names)
    return sorted(found)


def _fsync_tree(folder: str) -> None:
    for name in _files(folder) if os.path.isdir(folder) else ():
        with open(os.path.join(folder, name), "rb") as f:
            os.fsync(f.fileno())


def _fsync_dir(folder: str) -> None:
    """Make renames and new entries in `folder` durable (not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_manifest(folder: str) -> None:
    """Every file with its size (read back after fsync, so on a network filesystem too), written last."""
    files = {}
    for name in _files(folder):
        with open(os.path.join(folder, name), "rb") as f:
            os.fsync(f.fileno())
            files[name] = os.fstat(f.fileno()).st_size
    with open(os.path.join(folder, MANIFEST_NAME), "w", encoding="utf-8") as f:
        json.dump({"files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    for root, _, _ in os.walk(folder):
        _fsync_dir(root)


def _discard(path: str) -> None:
    """Delete a checkpoint so that it disappears at once: move it into the staging folder, then delete it there."""
    trash = os.path.join(os.path.dirname(path), STAGING_DIR, "deleted-" + os.path.basename(path))
    shutil.rmtree(trash, ignore_errors=True)
    os.makedirs(os.path.dirname(trash), exist_ok=True)
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


# ---- reading ----------------------------------------------------------------------------------------------------


def saved_model_files(folder: str) -> list[str]:
    """Names of the files that make `folder` a saved model: a config with its weights (a full model, or a stage-1
    save of the trainable part whose config records where the rest comes from) and/or a PEFT adapter's config with
    its weights. [] when it holds neither pair: a folder with checkpoints only is a run that has not finished."""
    if not os.path.isdir(folder):
        return []
    names = []
    weights = weight_files(folder)
    if weights and os.path.isfile(os.path.join(folder, CONFIG_NAME)):
        indexes = [name for name in (SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME)
                   if os.path.isfile(os.path.join(folder, name))]
        names += [CONFIG_NAME, *indexes, *(os.path.relpath(path, folder) for path in weights)]
    adapter_weights = [name for name in (ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME)
                       if os.path.isfile(os.path.join(folder, name))]
    if adapter_weights and os.path.isfile(os.path.join(folder, ADAPTER_CONFIG_NAME)):
        names += [ADAPTER_CONFIG_NAME, *adapter_weights]
    return names


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """(step, path) of every `checkpoint-N` folder in `output_dir`, lowest step first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_NAME.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return sorted(found)


def checkpoint_problem(folder: str, require_manifest: bool = True) -> str | None:
    """Why `folder` cannot be resumed from (naming the file), or None when its manifest matches its files.

    Without a manifest (a save cut short before it was written, or a folder written by another tool) the folder
    is checked for what shows: a missing trainer state, a safetensors or torch file cut short. It then passes
    only when `require_manifest` is False (the user named it).
    """
    manifest = os.path.join(folder, MANIFEST_NAME)
    if not os.path.isfile(manifest):
        problem = _visible_damage(folder)
        if problem is None and require_manifest:
            problem = f"no {MANIFEST_NAME}: the save did not finish, or another tool wrote the folder"
        return problem
    try:
        with open(manifest, encoding="utf-8") as f:
            files = json.load(f)["files"]
        expected = {str(name): int(size) for name, size in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST_NAME} is unreadable"
    for name, size in expected.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{name} is missing"
        actual = os.path.getsize(path)
        if actual < size:
            return f"{name} is truncated ({actual} of {size} bytes)"
        if actual != size:
            return f"{name} has {actual} bytes, {MANIFEST_NAME} says {size}"
    return None


def _visible_damage(folder: str) -> str | None:
    from safetensors import safe_open

    for name in _files(folder):
        path = os.path.join(folder, name)
        if name.endswith(".safetensors"):
            try:
                with safe_open(path, "pt"):
                    pass
            except Exception as error:  # safetensors raises its own SafetensorError (and OSError)
                return f"{name} is truncated or corrupt ({error})"
        elif name.endswith((".pt", ".pth", ".bin")) and not zipfile.is_zipfile(path):  # torch.save writes zips
            return f"{name} is truncated or corrupt"
    try:
        with open(os.path.join(folder, TRAINER_STATE_NAME), encoding="utf-8") as f:
            json.load(f)
    except FileNotFoundError:
        return f"{TRAINER_STATE_NAME} is missing"
    except (OSError, ValueError):
        return f"{TRAINER_STATE_NAME} is truncated or corrupt"
    return None


def latest_complete_checkpoint(output_dir: str) -> str | None:
    """The highest-numbered complete checkpoint in `output_dir`; incomplete ones are skipped with a warning."""
    for _, path in reversed(list_checkpoints(output_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        logger.warning("skipping incomplete checkpoint %s: %s", path, problem)
    return None


def resolve_resume(args) -> str | None:
    """The checkpoint to resume from (None: start from scratch), from `--resume_from_checkpoint` PATH | auto | true.

    Decided on the main process and shared, so every rank resumes from the same checkpoint. A user mistake (a
    finished model or checkpoints in the way, a damaged checkpoint) ends the run with one line, before anything is
    loaded: the entry point calls this first.
    """
    state = PartialState()
    outcome = [_resolve_resume(args) if state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(outcome)
    path, error = outcome[0]
    if error:
        raise UserInputError(error)
    return path


def _resolve_resume(args) -> tuple[str | None, str | None]:
    value, output_dir = args.resume_from_checkpoint, args.output_dir
    finished = saved_model_files(output_dir)
    if finished and not args.overwrite_output_dir and not list_checkpoints(output_dir):
        # (with checkpoints too, the rules below apply: `auto` continues from them, as after an interrupted rerun)
        shown = ", ".join(finished[:2]) + (", ..." if len(finished) > 2 else "")
        return None, (
            f"--output_dir {output_dir} already holds a finished model ({shown}): pass --overwrite_output_dir to train "
            "again (the model there is replaced once the new one is saved), or give another --output_dir"
        )
    if is_auto(value):
        if args.overwrite_output_dir:  # e.g. a recipe that says auto, and this flag on the command line
            return None, None
        return latest_complete_checkpoint(output_dir), None
    if str(value).lower() in ("none", "false", ""):
        existing = list_checkpoints(output_dir)
        if existing and not args.overwrite_output_dir:
            names = ", ".join(os.path.basename(path) for _, path in existing[-3:])
            return None, (
                f"--output_dir {output_dir} already holds checkpoints ({names}): pass --resume_from_checkpoint auto "
                "to continue from the latest complete one, or --overwrite_output_dir to delete them and start again"
            )
        return None, None
    if args.overwrite_output_dir:
        return None, f"--resume_from_checkpoint {value} and --overwrite_output_dir: give one of them, not both"
    if not os.path.isdir(value):
        return None, f"--resume_from_checkpoint {value}: no such folder"
    problem = checkpoint_problem(value, require_manifest=False)
    if problem:
        return None, f"--resume_from_checkpoint {value}: incomplete checkpoint, {problem}"
    if not os.path.isfile(os.path.join(value, MANIFEST_NAME)):
        logger.warning("--resume_from_checkpoint %s has no %s: resuming without knowing it is complete", value,
                       MANIFEST_NAME)
    return value, None


def is_auto(value) -> bool:
    """`--resume_from_checkpoint auto` (or true: a YAML recipe may give the boolean)."""
    return str(value).lower() in ("auto", "true")


# ---- stopping on a signal ---------------------------------------------------------------------------------------


class StopSignals:
    """While installed, SIGTERM or SIGINT asks training to stop after the current step (see `SaveAndStopCallback`);
    a second signal ends the process at once, with exit code 128 + its number.

    Python runs signal handlers only between bytecodes, never while the main thread waits in a C call (a
    collective that hangs, a long backward), so signals are read from `signal.set_wakeup_fd`'s pipe, which the
    interpreter writes at once, by a thread of their own: a second signal then ends even a hung process. The
    same signal again within `REPEAT_WINDOW_S` counts once: a launcher forwards the request it got to workers
    that may have had it already (Ctrl-C reaches torchrun and its workers, SLURM signals every process of a step).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    REPEAT_WINDOW_S = 1.0

    def __init__(self):
        self.received: int | None = None
        self._received_at = 0.0
        self._previous = None  # (handlers, wakeup fd) to put back

    @contextlib.contextmanager
    def installed(self):
        global _installed
        if threading.current_thread() is not threading.main_thread():  # signal.signal works in the main thread only
            logger.warning("training outside the main thread: SIGTERM/SIGINT will not save a checkpoint")
            yield self
            return
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        handlers = {signum: signal.signal(signum, self._note) for signum in self.SIGNALS}
        self._previous = handlers, signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        _installed = self
        watcher = threading.Thread(target=self._watch, args=(read_fd,), name="llava_hf-stop-signals", daemon=True)
        watcher.start()
        try:
            yield self
        finally:
            _installed = None
            self._restore()
            os.write(write_fd, b"\0")  # no signal has number 0: the watcher stops
            watcher.join()
            os.close(write_fd)
            os.close(read_fd)

    def _restore(self):
        handlers, wakeup_fd = self._previous
        signal.set_wakeup_fd(wakeup_fd)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    def _note(self, signum, frame):
        """The Python-level handler (main thread, between bytecodes): the training loop sees the first signal as
        soon as it runs Python again; the watcher then takes this same delivery for a repeat."""
        if self.received is None:
            self.received, self._received_at = signum, time.monotonic()

    def _watch(self, read_fd: int) -> None:
        while True:
            for signum in os.read(read_fd, 64):
                if signum == 0:
                    return
                if signum in self.SIGNALS:
                    self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        now = time.monotonic()
        if self.received is None:
            self.received, self._received_at = signum, now
        elif signum != self.received or now - self._received_at >= self.REPEAT_WINDOW_S:
            os.write(2, f"second stop signal ({signal.Signals(signum).name}): exiting now\n".encode())
            os._exit(128 + signum)


_installed: StopSignals | None = None


def _reset_in_forked_child():
    """A forked child (a DataLoader worker) gets the previous handlers back and must not write into the pipe."""
    global _installed
    if _installed is not None:
        with contextlib.suppress(ValueError):  # forked from a thread other than the main one
            _installed._restore()
        _installed = None


os.register_at_fork(after_in_child=_reset_in_forked_child)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving `checkpoint-<step>`. `exit_code` is 128 + the signal number (143 for
    SIGTERM, 130 for SIGINT), what a shell reports for a process ended by that signal."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}")
        self.signum, self.step = signum, step
        self.exit_code = 128 + signum


class SaveAndStopCallback(TrainerCallback):
    """At every step end the ranks agree whether any of them got a stop signal (a signal may reach one rank only);
    if one did, Trainer saves this step's checkpoint and stops, on every rank at the same step."""

    def __init__(self, signals: StopSignals):
        self.signals = signals
        self.stop_signal: int | None = None
        self.stopped_at_step: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        signum = self._any_rank_signal(args)
        if signum and self.stopped_at_step is None:
            self.stop_signal, self.stopped_at_step = signum, state.global_step
            control.should_save = control.should_training_stop = True
            if state.is_world_process_zero:
                logger.warning("%s: saving checkpoint-%d, then stopping (a second signal stops at once)",
                               signal.Signals(signum).name, state.global_step)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.stopped_at_step == state.global_step:
            control.should_save = False  # saved already (an epoch save strategy would save this step again)

    def _any_rank_signal(self, args) -> int:
        local = self.signals.received or 0
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return local
        flag = torch.tensor([local], device=args.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    def raise_if_stopped(self, output_dir: str) -> None:
        """After `trainer.train()`: raise `TrainingInterrupted` (the entry point exits with its code) and say where
        to resume from."""
        if self.stopped_at_step is None:
            return
        if PartialState().is_main_process:
            checkpoint = staging_paths(output_dir, self.stopped_at_step)[1]
            logger.error("stopped by %s after step %d: saved %s; run again with --resume_from_checkpoint auto "
                         "to continue", signal.Signals(self.stop_signal).name, self.stopped_at_step, checkpoint)
        raise TrainingInterrupted(self.stop_signal, self.stopped_at_step)


class ResumePointCallback(TrainerCallback):
    """Logs where a resumed run continues (the checkpoint, its step and epoch and the samples already seen), or
    that `--resume_from_checkpoint auto` found nothing to continue from."""

    def __init__(self, checkpoint: str | None):
        self.checkpoint = checkpoint

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.checkpoint is None:
            if is_auto(args.resume_from_checkpoint) and not args.overwrite_output_dir:
                logger.info("--resume_from_checkpoint %s: no complete checkpoint in %s, starting from scratch",
                            args.resume_from_checkpoint, args.output_dir)
            return
        samples = "unknown"
        if has_length(train_dataloader) and has_length(train_dataloader.dataset):
            samples = samples_seen(state.global_step, len(train_dataloader), len(train_dataloader.dataset), args)
        logger.info("resumed from %s: step %d, epoch %.2f, %s samples seen", self.checkpoint, state.global_step,
                    state.epoch or 0.0, samples)


def samples_seen(global_step: int, batches_per_epoch: int, num_samples: int, args) -> int:
    """Samples consumed by `global_step` optimizer steps (an epoch's last batch may be short)."""
    steps_per_epoch = max(math.ceil(batches_per_epoch / args.gradient_accumulation_steps), 1)
    epochs, steps = divmod(global_step, steps_per_epoch)
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    return epochs * num_samples + min(steps * global_batch, num_samples)
