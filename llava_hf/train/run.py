"""`train()`: the whole of one stage, in the order that loses the least time when something is wrong.

Cheap checks first (paths, option combinations, the data validator), then the model, then HF `Trainer`.
"""

import logging
import os

from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from transformers import set_seed

from .arguments import DataArguments, LlavaTrainingArguments, ModelArguments, is_demo
from .model_setup import check_options, configure_trainable, load_model_and_processor, trainable_parameter_summary

logger = logging.getLogger("llava_hf.train")

DEFAULT_CONTEXT = 2048


def data_sources(data_args: DataArguments):
    """One `DataSource` per data file; a single image folder is shared by all files."""
    from ..data.sources import DataSource

    if not data_args.data_path:
        raise ValueError("no training data: give --data_path (LLaVA .json/.jsonl) and --image_folder")
    folders = list(data_args.image_folder)
    if len(folders) == 1:
        folders *= len(data_args.data_path)
    if folders and len(folders) != len(data_args.data_path):
        raise ValueError(
            f"{len(data_args.data_path)} --data_path values but {len(folders)} --image_folder values; "
            "give one folder per file, or one for all"
        )
    folders = folders or [None] * len(data_args.data_path)
    for path in data_args.data_path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--data_path {path}: no such file")
    for folder in folders:
        if folder is not None and not os.path.isdir(folder):
            raise FileNotFoundError(f"--image_folder {folder}: no such directory")
    return [DataSource(path, folder) for path, folder in zip(data_args.data_path, folders)]


def check_model_paths(model_args: ModelArguments) -> None:
    for name in ("model_name_or_path", "llm_name_or_path", "vision_tower_name_or_path", "projector_path"):
        path = getattr(model_args, name)
        # "org/name" may be a hub id (resolved from the local HF cache); explicit paths must exist
        if path and path.startswith((".", "/", "~")) and not os.path.exists(os.path.expanduser(path)):
            raise FileNotFoundError(f"--{name} {path}: no such file or directory")


def validate(sources, tokenizer, template, max_length, data_args: DataArguments):
    """Run the data validator on the main process; every rank gets the same verdict."""
    from ..data.validate import validate_data

    state = PartialState()
    report = [validate_data(sources, tokenizer, template, max_length) if state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(report)
    report = report[0]
    if not report.ok:
        if state.is_main_process:
            print(report.format(), flush=True)
        if not data_args.skip_bad_samples or report.has_file_errors:
            raise SystemExit("data validation failed before step 1 (see the report above)")
        logger.warning("skipping %d bad sample(s) (--skip_bad_samples)", len(report.bad_samples))
    return report.bad_samples if data_args.skip_bad_samples else frozenset()


def configure_speed(model, model_args: ModelArguments, training_args: LlavaTrainingArguments) -> str:
    """The speed options that live on the model: padding-free rows get the per-sample `packed_sdpa` attention unless
    `--attn_implementation` names another, and the loss runs only where there are labels (`--loss_chunk_size`).
    Returns the language model's attention implementation as loaded, which `train` restores at the end."""
    loaded = model.config.text_config._attn_implementation
    if training_args.padding_free and model_args.attn_implementation is None:
        from ..models.packed_sdpa import NAME as PACKED_SDPA

        layer_types = set(getattr(model.config.text_config, "layer_types", None) or ["full_attention"])
        if layer_types != {"full_attention"}:
            raise ValueError(f"--padding_free: the text model has {sorted(layer_types)} layers; packed_sdpa supports "
                             "full attention only, so give --attn_implementation (flash_attention_2, flex_attention or "
                             "sdpa) or --padding_free false")
        model.language_model.set_attn_implementation(PACKED_SDPA)
    model.enable_supervised_loss(training_args.loss_chunk_size or None)
    return loaded


def train(model_args: ModelArguments, data_args: DataArguments, training_args: LlavaTrainingArguments):
    from ..data.collator import LlavaDataCollator
    from ..data.dataset import build_llava_dataset
    from ..data.templates import get_template
    from .callbacks import EvaluateChatCallback
    from .checkpointing import (
        ResumePointCallback, SaveAndStopCallback, StopSignals, clear_leftovers, delete_checkpoints, resolve_resume,
    )
    from .trainer import LlavaTrainer

    if training_args.output_dir is None:
        raise ValueError("give --output_dir")
    check_options(model_args, training_args)
    check_model_paths(model_args)
    sources = data_sources(data_args)
    checkpoint = resolve_resume(training_args)

    set_seed(training_args.seed)  # before the model: a new projector's init must not depend on the process
    model, processor = load_model_and_processor(model_args, training_args)
    template = get_template(data_args.prompt_template, processor.tokenizer)
    max_length = data_args.max_length or DEFAULT_CONTEXT - processor.image_seq_length
    pad_to_square = data_args.pad_image_to_square
    if pad_to_square is None:
        pad_to_square = training_args.stage == "finetune"
    exclude = validate(sources, processor.tokenizer, template, max_length, data_args) if data_args.validate_data else ()

    cache_dir = data_args.tokenization_cache_dir or os.path.join(
        os.path.dirname(os.path.abspath(training_args.output_dir)), ".cache", "tokenized"
    )
    dataset = build_llava_dataset(
        sources, processor, template, max_length, pad_to_square,
        cache_dir=cache_dir, skip_bad_samples=data_args.skip_bad_samples, exclude=exclude,
        cache_images=data_args.cache_images_in_memory,
    )
    if len(dataset) == 0:
        raise ValueError(f"no trainable samples left in {data_args.data_path} ({dataset.stats})")

    loaded_attention = configure_speed(model, model_args, training_args)
    base_model = model
    model = configure_trainable(model, training_args)
    if training_args.ddp_find_unused_parameters is None:
        # Features come from ViT layer -2, so a trained ViT's last layer never gets a gradient.
        training_args.ddp_find_unused_parameters = training_args.tune_vision_tower != "frozen"
    if PartialState().is_main_process:
        logger.info(trainable_parameter_summary(model))
        logger.info("data: %s", dataset.stats)

    stop_signals = StopSignals()
    save_and_stop = SaveAndStopCallback(stop_signals)
    callbacks = []
    if training_args.eval_chat_prompts:
        from ..data.images import load_image

        image = load_image(training_args.eval_chat_image) if training_args.eval_chat_image else None
        callbacks.append(EvaluateChatCallback(processor, training_args.eval_chat_prompts, image,
                                              training_args.eval_chat_steps, training_args.eval_chat_max_new_tokens))
    trainer = LlavaTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=LlavaDataCollator(processor.tokenizer.pad_token_id, padding_free=training_args.padding_free),
        processing_class=processor,
        callbacks=[*callbacks, save_and_stop, ResumePointCallback(checkpoint)],
    )
    for callback in callbacks:
        callback.trainer = trainer
    clear_leftovers(training_args)
    with stop_signals.installed():  # until the final model is saved: a signal then lets the save finish
        trainer.train(resume_from_checkpoint=checkpoint)
        save_and_stop.exit_if_stopped(training_args.output_dir)
        trainer.save_model()
        trainer.save_state()
    if training_args.save_strategy == "no":  # checkpoints here came from a stop signal, and the run is now complete
        delete_checkpoints(training_args, "--save_strategy no and the run is complete")
    # The model handed back computes exactly what the saved folder reloads to (packed_sdpa is a training setting).
    base_model.language_model.set_attn_implementation(loaded_attention)
    return trainer


def main(argv=None, demo_recipe_dir: str | None = None):
    """Entry point of `examples/train.py`: with no data and no model, run the built-in demo."""
    from .arguments import load_recipe, parse_args

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, training_args = parse_args(argv)
    if is_demo(model_args, data_args) and demo_recipe_dir is not None:
        from .demo import prepare_demo

        stage = training_args.stage
        prepare_demo(stage)
        recipe = load_recipe(os.path.join(demo_recipe_dir, f"demo_{stage}.yaml"))
        model_args, data_args, training_args = parse_args(argv, default_recipe=recipe)
    return train(model_args, data_args, training_args)
