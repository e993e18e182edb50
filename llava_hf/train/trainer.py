"""`LlavaTrainer`: HF `Trainer` with the two things LLaVA training needs on top (plus a tokens/s log entry).

1. A modality-grouped, length-grouped sampler (XTuner's `LengthGroupedSampler`): image and text-only
   samples never share a global batch except the very last, so ranks do not diverge in which modules they
   use, and the longest batch comes first so an OOM shows at step 1. With `--max_tokens_per_batch` the same
   order is cut into micro-batches by a token budget instead of a sample count.
2. Checkpoints hold what training changed: when the backbones are frozen, a checkpoint holds the projector
   (and whatever else trains) plus the config, whose source paths say where the frozen weights come from;
   `from_pretrained` rebuilds the rest. A 7B stage-1 checkpoint is 42 MB (bf16), not 15 GB.
3. Checkpoints are complete or absent: written into a staging folder, then renamed into place whole
   (`checkpointing.py`).
"""

import os
import time
from functools import partial

import torch
from transformers import Trainer
from transformers.trainer_utils import seed_worker

from ..data.sampler import ModalityLengthGroupedSampler, TokenBudgetBatchSampler
from .checkpointing import discard_stale, publish_checkpoint, staging_paths


class LlavaTrainer(Trainer):
    _checkpoint_staging_dir = None  # set while a checkpoint is being written

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tokens_since_log = 0
        self._last_log_time = time.perf_counter()

    def _get_train_sampler(self, train_dataset=None):
        # Private override (as TRL's trainers do): Trainer has no public hook for the sampler of its own dataloader.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = getattr(dataset, "modality_lengths", None)
        if lengths is None:
            return super()._get_train_sampler(train_dataset)
        # One global order; accelerate gives rank r every world_size-th batch of it (shard=False).
        return ModalityLengthGroupedSampler(
            lengths,
            batch_size=self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps,
            world_size=self.args.world_size,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            shard=False,
        )

    def get_train_dataloader(self):
        """With `--max_tokens_per_batch`, micro-batches come from `TokenBudgetBatchSampler` (a `batch_sampler`:
        their sample counts vary); accelerate then gives rank r every world_size-th batch."""
        budget = getattr(self.args, "max_tokens_per_batch", None)
        lengths = getattr(self.train_dataset, "modality_lengths", None)
        if not budget:
            return super().get_train_dataloader()
        if lengths is None:
            raise ValueError("--max_tokens_per_batch needs a dataset with `modality_lengths` (a LlavaDataset)")
        batch_sampler = TokenBudgetBatchSampler(
            lengths, budget,
            batch_size=self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps,
            world_size=self.args.world_size,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
        )
        workers = self.args.dataloader_num_workers
        loader = torch.utils.data.DataLoader(
            self.train_dataset, batch_sampler=batch_sampler, collate_fn=self.data_collator, num_workers=workers,
            pin_memory=self.args.dataloader_pin_memory, persistent_workers=self.args.dataloader_persistent_workers,
            prefetch_factor=self.args.dataloader_prefetch_factor if workers > 0 else None,
            worker_init_fn=partial(seed_worker, num_workers=workers, rank=self.args.process_index),
        )
        return self.accelerator.prepare(loader)

    def create_optimizer(self, model=None):
        """Per-part learning rates (`--vision_tower_learning_rate`, `--projector_learning_rate`) as optimizer
        param groups, so they also hold under DeepSpeed (XTuner drops its `paramwise_cfg` there)."""
        part_lrs = {"vision_tower.": self.args.vision_tower_learning_rate,
                    "multi_modal_projector.": self.args.projector_learning_rate}
        if self.optimizer is not None or not any(lr is not None for lr in part_lrs.values()):
            return super().create_optimizer(model)
        model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(model))
        groups = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            lr = next((lr for part, lr in part_lrs.items() if lr is not None and part in name), self.args.learning_rate)
            weight_decay = self.args.weight_decay if name in decay else 0.0
            groups.setdefault((lr, weight_decay), []).append(param)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(
            [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()], **optimizer_kwargs
        )
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # a padding-free row has no attention mask: every position is a real token
        mask = inputs.get("attention_mask")
        self._tokens_since_log += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def log(self, logs, *args, **kwargs):
        now = time.perf_counter()
        if "loss" in logs:
            tokens = self._tokens_since_log * self.args.world_size
            logs["tokens_per_second"] = round(tokens / max(now - self._last_log_time, 1e-9), 1)
            self._tokens_since_log, self._last_log_time = 0, now
        super().log(logs, *args, **kwargs)

    def _save_checkpoint(self, model, trial):
        # Private override: Trainer writes checkpoint-N in place and prunes older ones within this call, before
        # anything could tell the new one is complete; so it writes into a staging folder published whole.
        run_dir = self._get_output_dir(trial)
        staged, final = staging_paths(run_dir, self.state.global_step)
        discard_stale(staged, self.args, self.accelerator)
        self._checkpoint_staging_dir = os.path.dirname(staged)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._checkpoint_staging_dir = None
        publish_checkpoint(staged, final, self.args, self.state, self.accelerator)

    def _get_output_dir(self, trial):
        # Private override: the folder `_save_checkpoint` writes checkpoint-N into (the staging one while saving).
        return self._checkpoint_staging_dir or super()._get_output_dir(trial)

    def _save(self, output_dir=None, state_dict=None):
        # Private override: where Trainer's save paths (checkpoints and save_model) hand over the state dict.
        model = self.accelerator.unwrap_model(self.model)
        if not hasattr(model, "peft_config") and _rebuildable_from_sources(model):
            if state_dict is None:
                state_dict = model.state_dict()
            trainable = {name for name, p in model.named_parameters() if p.requires_grad}
            state_dict = {k: v for k, v in state_dict.items() if k in trainable}
        super()._save(output_dir, state_dict=state_dict)


def _rebuildable_from_sources(model) -> bool:
    """Frozen weights may be left out only when the config says where they come from."""
    config = getattr(model, "config", None)
    return bool(getattr(config, "text_model_name_or_path", None) and getattr(config, "vision_model_name_or_path", None))
