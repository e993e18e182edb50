"""`train()`: the whole of one stage, in the order that loses the least time when something is wrong.

What the output folder holds first (a finished model is never trained over by accident), then cheap checks (option
combinations, paths, Hub names, the data validator), then the model, then HF `Trainer`.
"""

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from transformers import set_seed

from ..data.errors import DataError
from ..data.tokenization import default_max_length
from ..errors import OK, USAGE_ERROR, USER_ERRORS, UserInputError, first_line, report_user_error
from ..models.llava_internlm2.checkpoint_io import is_hub_id
from .arguments import DataArguments, LlavaTrainingArguments, ModelArguments, is_demo
from .model_setup import (
    check_options, configure_trainable, load_model, load_processor, trainable_parameter_summary, uses_adapter,
    write_adapter_base,
)

if TYPE_CHECKING:  # imported where used: they pull in Trainer and the models
    from transformers import PreTrainedModel

    from .checkpointing import SaveAndStopCallback
    from .trainer import LlavaTrainer


logger = logging.getLogger("llava_hf.train")


def data_sources(data_args: DataArguments):
    """One `DataSource` per data file; a single image folder is shared by all files."""
    from ..data.sources import pair_sources

    if not data_args.data_path:
        raise ValueError("no training data: give --data_path (LLaVA .json/.jsonl) and --image_folder")
    sources = pair_sources(data_args.data_path, data_args.image_folder, flag_style="_")
    for source in sources:
        if not os.path.isfile(source.data_path):
            raise FileNotFoundError(f"--data_path {source.data_path}: no such file")
        if source.image_folder is not None and not os.path.isdir(source.image_folder):
            raise FileNotFoundError(f"--image_folder {source.image_folder}: no such directory")
    return sources


MODEL_FLAGS = ("model_name_or_path", "llm_name_or_path", "vision_tower_name_or_path")  # folders or Hub ids


def check_model_paths(model_args: ModelArguments) -> None:
    """Every local path must exist: a missing one is named at once, without asking the Hub about it. Only an
    `owner/name` Hub id is left to `check_hub_models`; `--projector_path` is always local."""
    for name in (*MODEL_FLAGS, "projector_path"):
        path = getattr(model_args, name)
        if not path or os.path.exists(os.path.expanduser(path)) or (name in MODEL_FLAGS and is_hub_id(path)):
            continue
        if name == "projector_path":
            raise UserInputError(f"--{name} {path}: no such file or folder")
        raise UserInputError(f"--{name} {path}: no such folder")


def check_hub_models(model_args: ModelArguments) -> None:
    """A model given as an `owner/name` Hub id must have a config.json in the HF cache or on the Hub: a wrong,
    private or unreachable name stops the run with one line naming the flag, before any weights load."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
    from transformers.utils import CONFIG_NAME

    for name in MODEL_FLAGS:
        repo_id = getattr(model_args, name)
        if not repo_id or not is_hub_id(repo_id) or os.path.exists(repo_id):
            continue
        try:
            hf_hub_download(repo_id, CONFIG_NAME)
        except (HfHubHTTPError, EntryNotFoundError, OfflineModeIsEnabled, HFValidationError) as error:
            raise UserInputError(f"--{name} {repo_id}: not a local folder, and not loadable from the Hub "
                                 f"({first_line(error)})") from None


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
            raise DataError("data validation failed before step 1 (see the report above)")
        logger.warning("skipping %d bad sample(s) (--skip_bad_samples)", len(report.bad_samples))
    return report.bad_samples if data_args.skip_bad_samples else frozenset()


def configure_speed(model, model_args: ModelArguments, training_args: LlavaTrainingArguments, dataset=None) -> str:
    """The speed options that live on the model (`train/speed.py`: rows and attention, supervised-only loss,
    checkpointing sized by `dataset`'s longest micro-batch, fused kernels), each logged with its reason; resolves
    `auto` in `training_args`. Returns the language model's attention implementation as loaded, which `train`
    restores."""
    from .speed import configure

    return configure(model, model_args.attn_implementation, training_args, dataset)


@dataclass
class PreparedRun:
    """Everything `prepare` checked and built; `run` trains it."""

    trainer: "LlavaTrainer"
    checkpoint: str | None  # resumed from, None for a fresh start
    save_and_stop: "SaveAndStopCallback"
    model: "PreTrainedModel"  # the LLaVA model under any PEFT wrapper
    loaded_attention: str  # the language model's attention implementation as loaded


def prepare(model_args: ModelArguments, data_args: DataArguments, training_args: LlavaTrainingArguments,
            checkpoint: str | None) -> PreparedRun:
    """Check the options and paths, load the model, validate and tokenize the data and build the trainer:
    everything that can fail on user input, before step 1. `checkpoint` is what `resolve_resume` picked (None: a
    fresh start), decided before this, first of all."""
    from ..data.collator import LlavaDataCollator
    from ..data.dataset import build_llava_dataset
    from ..data.templates import get_template
    from .callbacks import EvaluateChatCallback
    from .checkpointing import ResumePointCallback, SaveAndStopCallback, StopSignals
    from .trainer import LlavaTrainer

    check_options(model_args, training_args)
    check_model_paths(model_args)
    sources = data_sources(data_args)
    if training_args.eval_chat_image and not os.path.isfile(training_args.eval_chat_image):
        raise UserInputError(f"--eval_chat_image {training_args.eval_chat_image}: no such file")
    check_hub_models(model_args)

    processor = load_processor(model_args)  # files only: the data is checked before any weights load
    template = get_template(data_args.prompt_template, processor.tokenizer)
    max_length = data_args.max_length or default_max_length(processor.image_seq_length)
    pad_to_square = data_args.pad_image_to_square
    if pad_to_square is None:
        pad_to_square = training_args.stage == "finetune"
    exclude = validate(sources, processor.tokenizer, template, max_length, data_args) if data_args.validate_data else ()

    set_seed(training_args.seed)  # before the model: a new projector's init must not depend on the process
    model, processor = load_model(model_args, training_args, processor)

    cache_dir = data_args.tokenization_cache_dir or os.path.join(
        os.path.dirname(os.path.abspath(training_args.output_dir)), ".cache", "tokenized"
    )
    dataset = build_llava_dataset(
        sources, processor, template, max_length, pad_to_square,
        cache_dir=cache_dir, skip_bad_samples=data_args.skip_bad_samples, exclude=exclude,
        cache_images=data_args.cache_images_in_memory,
    )
    if len(dataset) == 0:
        raise DataError(f"no trainable samples left in {data_args.data_path} ({dataset.stats})")

    if not model_args.model_name_or_path and uses_adapter(training_args):  # the adapter's base must exist on disk
        model.name_or_path = write_adapter_base(model, processor, training_args.output_dir,
                                                keep_existing=checkpoint is not None)
    llava_model = model
    model = configure_trainable(model, training_args)
    loaded_attention = configure_speed(llava_model, model_args, training_args, dataset)
    if training_args.ddp_find_unused_parameters is None:
        # Features come from ViT layer -2, so a trained ViT's last layer never gets a gradient.
        training_args.ddp_find_unused_parameters = training_args.tune_vision_tower != "frozen"
    if PartialState().is_main_process:
        logger.info(trainable_parameter_summary(model))
        logger.info("data: %s", dataset.stats)

    save_and_stop = SaveAndStopCallback(StopSignals())
    callbacks = [save_and_stop, ResumePointCallback(checkpoint)]
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
        callbacks=callbacks,
    )
    return PreparedRun(trainer, checkpoint, save_and_stop, llava_model, loaded_attention)


def run(prepared: PreparedRun):
    """Train, then save the final model and state. A stop signal saves a checkpoint and raises
    `TrainingInterrupted` instead of writing the final model."""
    from .checkpointing import clear_leftovers, delete_checkpoints, save_final_model

    trainer, training_args = prepared.trainer, prepared.trainer.args
    clear_leftovers(training_args)
    with prepared.save_and_stop.signals.installed():  # until the final model is saved: a signal lets the save finish
        trainer.train(resume_from_checkpoint=prepared.checkpoint)
        prepared.save_and_stop.raise_if_stopped(training_args.output_dir)
        save_final_model(trainer)
        trainer.save_state()
    if training_args.save_strategy == "no":  # checkpoints here came from a stop signal, and the run is now complete
        delete_checkpoints(training_args, "--save_strategy no and the run is complete")
    # The model handed back computes exactly what the saved folder reloads to (the packed attention is a training
    # setting).
    prepared.model.language_model.set_attn_implementation(prepared.loaded_attention)
    return trainer


def train(model_args: ModelArguments, data_args: DataArguments, training_args: LlavaTrainingArguments):
    """One stage, start to end (what the output folder allows, `prepare`, then `run`); returns the trainer."""
    from .checkpointing import resolve_resume

    return run(prepare(model_args, data_args, training_args, resolve_resume(training_args)))


def main(argv=None) -> int:
    """Entry point of `examples/train.py`: with no data and no model, run the built-in demo. Returns the exit status:
    0 when trained; 2 when a user mistake (a wrong path, option or data, found before step 1) was reported as one
    `error:` line; 128 + the signal number when a stop signal saved a checkpoint and ended training."""
    from .arguments import parse_args
    from .checkpointing import TrainingInterrupted, resolve_resume

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        model_args, data_args, training_args = parse_args(argv)
        demo_stage = training_args.stage if is_demo(model_args, data_args) else None
        if demo_stage:
            from ..demo.prepare import demo_recipe, prepare_demo

            model_args, data_args, training_args = parse_args(argv, default_recipe=demo_recipe(demo_stage))
        checkpoint = resolve_resume(training_args)  # first: a finished model or checkpoints in the way stop here
        if demo_stage:
            prepare_demo(demo_stage)
        prepared = prepare(model_args, data_args, training_args, checkpoint)
    except USER_ERRORS as error:
        return report_user_error("train.py", error) if PartialState().is_main_process else USAGE_ERROR
    try:
        run(prepared)
    except TrainingInterrupted as stop:
        return stop.exit_code
    return OK
