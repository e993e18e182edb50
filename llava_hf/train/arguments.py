"""Command-line / YAML arguments for `examples/train.py`.

Three dataclasses, parsed with `HfArgumentParser` like TRL's scripts: `ModelArguments` (what to build or
load), `DataArguments` (what to train on) and `LlavaTrainingArguments` (HF `TrainingArguments` plus what to
train in each stage). `--config recipe.yaml` supplies defaults; flags given on the command line win.
"""

import argparse
import os
import sys
from dataclasses import dataclass, field, fields
from typing import Literal, get_args

import yaml
from transformers import HfArgumentParser, TrainingArguments

from ..argparsing import ArgumentParser, OneLineErrors
from ..dtypes import DTYPE_CHOICES
from ..errors import UserInputError
from ..models.llava_internlm2.configuration_llava_internlm2 import ProjectorDownsample, ProjectorType

DtypeName = Literal[DTYPE_CHOICES]
Stage = Literal["pretrain", "finetune"]
TuneMode = Literal["frozen", "full", "lora"]
AdapterDtype = Literal["float32", "bfloat16"]
FeatureSelectStrategy = Literal["default", "full"]
# ModelArguments that shape a new model's config (LlavaInternLM2Config fields of the same names)
NEW_MODEL_CONFIG_FLAGS = ("vision_feature_layer", "vision_feature_select_strategy", "projector_type",
                          "projector_downsample")
STAGES, TUNE_MODES, ADAPTER_DTYPES = get_args(Stage), get_args(TuneMode), get_args(AdapterDtype)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A llava_internlm2 folder to start from (e.g. the stage-1 output for --stage finetune)."},
    )
    llm_name_or_path: str | None = field(
        default=None, metadata={"help": "Build a new model from this LLM folder (with --vision_tower_name_or_path)."}
    )
    vision_tower_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Vision encoder folder or Hub id: CLIP (any resolution), SigLIP, or another fixed-resolution "
                          "transformers vision model (a two-tower CLIP/SigLIP folder gives its vision side)."},
    )
    projector_path: str | None = field(default=None, metadata={"help": "Optional projector weights to start from."})
    # How a new model (--llm_name_or_path) reads its encoder: None keeps LlavaInternLM2Config's default.
    vision_feature_layer: list[int] | None = field(
        default=None,
        metadata={"help": "Encoder layer(s) the image features come from (default -2, LLaVA-1.5's); several are "
                          "concatenated, e.g. -2 -1 (the projector's input widens)."},
    )
    vision_feature_select_strategy: FeatureSelectStrategy | None = field(
        default=None,
        metadata={"help": "default: drop what the encoder puts ahead of its patches (CLIP's CLS; SigLIP has none); "
                          "full: keep it."},
    )
    projector_type: ProjectorType | None = field(
        default=None, metadata={"help": "mlp2x_gelu (default: Linear-GELU-Linear, LLaVA-1.5's) or linear (LLaVA-1's)."}
    )
    projector_downsample: ProjectorDownsample | None = field(
        default=None,
        metadata={"help": "Merge each 2x2 block of patches into one image token before the projector: pixel_shuffle "
                          "(features concatenated) or avg_pool; 4x fewer image tokens (SigLIP-384: 729 -> 196). "
                          "Default: none. Not expressible by stock LLaVA (export-hf refuses it)."},
    )
    torch_dtype: DtypeName = field(
        default="auto", metadata={"help": "Weights dtype (auto: the --bf16/--fp16 dtype, else float32)."}
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "sdpa (default), eager, flash_attention_2, ... For padding-free rows training picks one that "
                          "reads the sample boundaries (see --padding_free) unless this names one."},
    )
    bits: int | None = field(default=None, metadata={"help": "4 loads the LLM in NF4 (QLoRA); needs CUDA + bitsandbytes."})


@dataclass
class DataArguments:
    data_path: list[str] = field(default_factory=list, metadata={"help": "LLaVA .json/.jsonl file(s)."})
    image_folder: list[str] = field(
        default_factory=list, metadata={"help": "Image folder per data file (one value is shared by all files)."}
    )
    prompt_template: str = field(default="internlm2_chat", metadata={"help": "Prompt template name."})
    max_length: int | None = field(
        default=None, metadata={"help": "Max text tokens; default 2048 - image tokens (1472 for CLIP-L/336)."}
    )
    pad_image_to_square: bool | None = field(
        default=None, metadata={"help": "Pad images to a square with the mean colour (default: on for finetune)."}
    )
    skip_bad_samples: bool = field(
        default=False, metadata={"help": "Skip (and count) samples the validator rejects instead of stopping."}
    )
    validate_data: bool = field(default=True, metadata={"help": "Validate the data before step 1."})
    cache_images_in_memory: bool = field(
        default=False,
        metadata={"help": "Keep preprocessed images in memory after their first use (small datasets, e.g. the demo)."},
    )
    tokenization_cache_dir: str | None = field(
        default=None, metadata={"help": "Where tokenized data is cached (default: <output_dir>/../.cache/tokenized)."}
    )


@dataclass
class LlavaTrainingArguments(TrainingArguments):
    stage: Stage = field(default="pretrain", metadata={"help": "pretrain (projector alignment) or finetune."})
    tune_llm: TuneMode | None = field(
        default=None, metadata={"help": "How the LLM trains (default: frozen for pretrain, full for finetune)."}
    )
    tune_vision_tower: TuneMode = field(default="frozen", metadata={"help": "How the ViT trains."})
    lora_r: int = field(default=512, metadata={"help": "LLM LoRA rank."})
    lora_alpha: int = field(default=256, metadata={"help": "LLM LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input (LLM and ViT)."})
    vision_lora_r: int = field(default=64, metadata={"help": "ViT LoRA rank."})
    vision_lora_alpha: int = field(default=16, metadata={"help": "ViT LoRA alpha."})
    vision_tower_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the ViT's trainable weights (default: --learning_rate)."}
    )
    projector_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the projector (default: --learning_rate)."}
    )
    eval_chat_prompts: list[str] = field(
        default_factory=list, metadata={"help": "Prompts answered (with --eval_chat_image) every eval_chat_steps."}
    )
    eval_chat_image: str | None = field(default=None, metadata={"help": "Image the chat probes ask about."})
    eval_chat_steps: int = field(default=500, metadata={"help": "Answer the chat probes every N steps (and at the end)."})
    eval_chat_max_new_tokens: int = field(default=50, metadata={"help": "Longest answer of a chat probe."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint folder, or auto (or true): the latest complete checkpoint in output_dir, "
                          "or a fresh start when there is none."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Delete the checkpoints already in output_dir and train from scratch (transformers 5 "
                          "dropped its flag of this name). To continue instead: --resume_from_checkpoint auto."},
    )
    # Speed (benchmarks/throughput.py measures them against stock transformers; train/speed.py applies them)
    padding_free: str = field(  # "auto", or True / False once parsed
        default="auto",
        metadata={"help": "Flatten each micro-batch into one row without padding (per-sample position ids; attention "
                          "stays within each sample): the same samples and loss as padded batches, no padding compute. "
                          "auto: where a varlen attention kernel serves (flash-attn, or torch >= 2.10 on sm80+ in "
                          "bf16/fp16) and on a CPU, padded rows otherwise (the log says which and why); true: always "
                          "(an error on a GPU without such a kernel); false: padded rows.",
                  "nargs": "?", "const": "true"},
    )
    gradient_checkpointing: str | None = field(  # HF's flag, plus "auto"; True / False / "auto" once parsed
        default=None,
        metadata={"help": "Recompute layer activations in backward instead of storing them. auto: on a GPU, checkpoint "
                          "only as many decoder layers as the longest micro-batch needs to fit the card's free memory "
                          "(the log says how many and why); on a CPU, none.",
                  "nargs": "?", "const": "true"},
    )
    use_liger_kernel: bool = field(
        default=False,
        metadata={"help": "liger-kernel's fused RMSNorm, SwiGLU, rotary and linear cross-entropy on our modules "
                          "(CUDA + Triton; pip install 'llava_hf[liger]'). Off by default until measured on a GPU."},
    )
    compile_decoder_layers: bool = field(
        default=False,
        metadata={"help": "torch.compile each decoder layer (regional compile, dynamic shapes) instead of the whole "
                          "model. Off by default until measured on a GPU."},
    )
    max_tokens_per_batch: int | None = field(
        default=None,
        metadata={"help": "Token-budget batching: each micro-batch holds as many samples (of one modality) as fit in "
                          "this many tokens, instead of --per_device_train_batch_size samples. Default: off."},
    )
    loss_chunk_size: int = field(
        default=1024,
        metadata={"help": "Apply the LM head and cross-entropy only to positions with a label, this many at a time, "
                          "recomputed in backward (no full-vocabulary fp32 logits for the batch). 0: the stock loss."},
    )
    adapter_dtype: AdapterDtype = field(
        default="float32",
        metadata={"help": "float32 (PEFT's default: LoRA weights, and under QLoRA the non-quantized weights, in fp32) "
                          "or bfloat16 (everything in the model's dtype: half the adapter memory; with --optim "
                          "paged_adamw_8bit this is what fits a 7B QLoRA with r512 adapters on a 24 GB card)."},
    )
    checkpoint_every_n_layers: int = field(
        default=1,
        metadata={"help": "With --gradient_checkpointing, checkpoint only every n-th layer (1: all, as HF does); the "
                          "others keep their activations, trading memory back for speed."},
    )
    # HF defaults that do not suit this trainer
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep False: the collator needs every key."})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={"help": "Logging integrations."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"--stage must be one of {STAGES}, got {self.stage!r}")
        if self.tune_llm is None:
            self.tune_llm = "frozen" if self.stage == "pretrain" else "full"
        for name in ("tune_llm", "tune_vision_tower"):
            if getattr(self, name) not in TUNE_MODES:
                raise ValueError(f"--{name} must be one of {TUNE_MODES}, got {getattr(self, name)!r}")
        for name in ("max_tokens_per_batch", "checkpoint_every_n_layers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value}")
        if self.adapter_dtype not in ADAPTER_DTYPES:
            raise ValueError(f"--adapter_dtype must be one of {ADAPTER_DTYPES}, got {self.adapter_dtype!r}")
        if self.loss_chunk_size < 0:
            raise ValueError(f"--loss_chunk_size must be >= 0 (0: the stock loss), got {self.loss_chunk_size}")
        self.padding_free = true_false_or_auto("padding_free", self.padding_free)
        self.gradient_checkpointing = true_false_or_auto("gradient_checkpointing", self.gradient_checkpointing)
        super().__post_init__()
        if self.checkpoint_every_n_layers > 1:
            # HF Trainer passes `every_n_layers` from these kwargs to the model (transformers >= 5.17); 5.2x also
            # keeps them under the new name `activation_checkpointing_kwargs`.
            for name in ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"):
                if hasattr(self, name):
                    setattr(self, name, {**(getattr(self, name) or {}), "every_n_layers": self.checkpoint_every_n_layers})


def true_false_or_auto(flag: str, value):
    """`auto`, or a bool from a YAML bool or a command-line word (true/false/yes/no/1/0, any case); None stays None."""
    if value is None or isinstance(value, bool):
        return value
    words = {"auto": "auto", "true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if str(value).lower() not in words:
        raise ValueError(f"--{flag} must be true, false or auto, got {value!r}")
    return words[str(value).lower()]


ARG_CLASSES = (ModelArguments, DataArguments, LlavaTrainingArguments)


def load_recipe(path: str) -> dict:
    """A YAML recipe: a flat mapping of argument names to values; unknown names are an error.

    `base: other.yaml` (relative to this file) starts from another recipe, so a variant lists only what
    differs (the 20B QLoRA recipe is the 7B one with another model and batch split).
    """
    with open(path, encoding="utf-8") as f:
        recipe = yaml.safe_load(f) or {}
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of argument names to values")
    base = recipe.pop("base", None)
    known = {f.name for cls in ARG_CLASSES for f in fields(cls)}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ValueError(f"{path}: unknown argument(s) {unknown}")
    if base:
        recipe = {**load_recipe(os.path.join(os.path.dirname(os.path.abspath(path)), base)), **recipe}
    return recipe


PROG = "train.py"
HF_TRAINING_ARGUMENTS_DOCS = "https://huggingface.co/docs/transformers/main_classes/trainer"
# --help: llava_hf's own flags first, in these groups (a flag of ours not listed here goes to the last one), then
# --config, then HF's TrainingArguments: those below with their help, every other one by name only.
HELP_GROUPS = {
    "stage: what trains": ("stage", "tune_llm", "tune_vision_tower", "vision_tower_learning_rate",
                           "projector_learning_rate"),
    "data": tuple(f.name for f in fields(DataArguments)),
    "model": tuple(f.name for f in fields(ModelArguments)),
    "LoRA (--tune_llm lora, --tune_vision_tower lora)": ("lora_r", "lora_alpha", "lora_dropout", "vision_lora_r",
                                                          "vision_lora_alpha", "adapter_dtype"),
    "speed": ("padding_free", "max_tokens_per_batch", "loss_chunk_size", "gradient_checkpointing",
              "checkpoint_every_n_layers", "use_liger_kernel", "compile_decoder_layers"),
    "output, checkpoints and chat probes": ("output_dir", "overwrite_output_dir", "resume_from_checkpoint",
                                            "eval_chat_prompts", "eval_chat_image", "eval_chat_steps",
                                            "eval_chat_max_new_tokens"),
}
HF_FLAGS_SHOWN = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                  "gradient_accumulation_steps", "bf16", "fp16", "optim",
                  "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "save_strategy", "save_steps",
                  "save_total_limit", "logging_steps", "report_to", "seed", "dataloader_num_workers", "deepspeed",
                  "use_cpu")


class RankZeroMessages:
    """Mixin for an `argparse.ArgumentParser`: under a multi-process launch every rank parses the same flags, and
    only rank 0 prints the help or a usage error (all exit alike). The rank is read from the launcher's environment:
    nothing distributed is set up while parsing."""

    @staticmethod
    def speaks() -> bool:
        return os.environ.get("RANK", "0") == "0"

    def print_help(self, file=None):
        if self.speaks():
            super().print_help(file)

    def exit(self, status=0, message=None):
        super().exit(status, message if self.speaks() else None)


class TrainArgumentParser(RankZeroMessages, OneLineErrors, HfArgumentParser):
    """`HfArgumentParser` under the rules of every llava_hf command (`llava_hf.argparsing`: no abbreviations, so
    `--learning_rat` is an error, and one-line usage errors), with a `--help` that a new user can read."""

    def __init__(self, dataclass_types=ARG_CLASSES, **kwargs):
        kwargs.setdefault("prog", PROG)
        kwargs.setdefault("usage", f"{PROG} [--config RECIPE.yaml] [--stage {{{','.join(STAGES)}}}] [--FLAG VALUE ...]")
        kwargs.setdefault("description", "Train a LLaVA-style model, stage 1 (--stage pretrain) or stage 2 (--stage "
                          "finetune). With no data and no model flags: the built-in demo (work_dirs/demo/).")
        super().__init__(dataclass_types, **kwargs)
        self._group_help()

    def _group_help(self):
        """Regroup the flags HfArgumentParser added (one group, HF's first) for `--help`; parsing is unchanged.
        argparse has no public way to move a flag between groups, so the groups' action lists are edited."""
        names = [f.name for cls in self.dataclass_types for f in fields(cls) if f.init]
        hf_names = {f.name for f in fields(TrainingArguments)}
        listed = {name for group in HELP_GROUPS.values() for name in group}
        groups = dict(HELP_GROUPS)
        last = list(groups)[-1]
        groups[last] += tuple(name for name in names if name not in hf_names and name not in listed)
        for title, group_names in groups.items():
            group = self.add_argument_group(title)
            for name in group_names:
                self._move(name, group)
        self.add_argument_group("recipe").add_argument(
            "--config", metavar="RECIPE.yaml", default=argparse.SUPPRESS,  # read by parse_args before the flags
            help="A YAML recipe (examples/recipes/): `flag: value` lines, `base: other.yaml` to start from another "
                 "recipe. Flags on the command line win over it.")
        others = [name for name in names if name in hf_names and name not in listed and name not in HF_FLAGS_SHOWN]
        hf = self.add_argument_group(
            "Hugging Face TrainingArguments",
            f"Every one is accepted (see TrainingArguments at {HF_TRAINING_ARGUMENTS_DOCS}); the ones most runs set "
            "are here, the others are named at the end.",
        )
        self.epilog = "Other TrainingArguments flags: " + ", ".join("--" + name for name in others) + "."
        for name in HF_FLAGS_SHOWN:
            self._move(name, hf)
        for name in others:
            for action in self._move(name, hf):
                action.help = argparse.SUPPRESS

    def _move(self, name, group):
        """Move the flag `--name` (and its `--no_name` complement) from the default group to `group`."""
        moved = [action for action in self._optionals._group_actions if action.dest == name]
        for action in moved:
            self._optionals._group_actions.remove(action)
            group._group_actions.append(action)
        return moved

    def parse_flags(self, argv: list[str]):
        """The dataclasses; a flag nobody defines (`--learning_rat`) is a usage error, not HF's ValueError."""
        *parsed, unknown = self.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return tuple(parsed)


class _ConfigParser(RankZeroMessages, ArgumentParser):
    """Reads `--config` alone, before the flags."""


def split_config(argv: list[str]) -> tuple[str | None, list[str]]:
    """(`--config` value, the other flags): the recipe is read before the flags, which override it."""
    parser = _ConfigParser(prog=PROG, add_help=False)
    parser.add_argument("--config", metavar="RECIPE.yaml")
    known, rest = parser.parse_known_args(argv)
    return known.config, rest


def parse_args(argv: list[str] | None = None, default_recipe: dict | None = None):
    """Parse `--config recipe.yaml` + flags into (ModelArguments, DataArguments, LlavaTrainingArguments).

    Precedence: command-line flags > `--config` recipe > `default_recipe` (the demo's) > dataclass defaults.
    """
    config, argv = split_config(list(sys.argv[1:] if argv is None else argv))
    recipe = dict(default_recipe or {})
    if config is not None:
        if not os.path.isfile(config):
            raise UserInputError(f"--config {config}: no such file")
        recipe.update(load_recipe(config))
    parser = TrainArgumentParser()
    parser.set_defaults(**recipe)
    return parser.parse_flags(argv)


def is_demo(model_args: ModelArguments, data_args: DataArguments) -> bool:
    """No data and no model given: run the built-in demo."""
    return not data_args.data_path and not (model_args.model_name_or_path or model_args.llm_name_or_path)

