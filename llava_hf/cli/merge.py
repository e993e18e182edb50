"""`llava-hf merge`: one complete, self-contained model folder from anything training writes (see
`llava_hf.export.merge`), or the seed's `merge LLM_DIR LLM_ADAPTER OUT` and
`merge VISION_DIR VISION_ADAPTER OUT --is_clip` (CLIP, SigLIP, ...; the flag keeps XTuner's name)."""

import argparse
import sys

from llava_hf.dtypes import DTYPE_CHOICES


def add_arguments(parser: argparse.ArgumentParser):
    parser.usage = "llava-hf merge [options] SRC OUT | BASE ADAPTER OUT [--is_clip]"
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="SRC OUT: a training output (full, stage-1, LoRA/QLoRA adapter, checkpoint-N) -> one "
                             "complete folder. BASE ADAPTER OUT: a PEFT adapter merged into a bare LLM (or vision "
                             "encoder, with --is_clip), e.g. XTuner's llm_adapter/ and visual_encoder_adapter/")
    parser.add_argument("--is_clip", action="store_true",
                        help="BASE is a vision encoder: CLIP, SigLIP, ... (ADAPTER a ViT LoRA)")
    add_output_arguments(parser)


def add_output_arguments(parser: argparse.ArgumentParser, out_folder: bool = True):
    """Options shared by the commands that write a model folder (`out_folder`: to an OUT the user names)."""
    parser.add_argument("--torch_dtype", choices=DTYPE_CHOICES, default="auto",
                        help="weights dtype (auto: as stored; a QLoRA base is never loaded in 4 bits)")
    parser.add_argument("--max_shard_size", default="5GB", help="largest safetensors shard (default 5GB)")
    if out_folder:
        parser.add_argument("--force", action="store_true", help="replace OUT if it exists and is not empty")


def run(args) -> int:
    from llava_hf.export.merge import merge_model_folder, merge_plain_adapter
    from llava_hf.errors import UserInputError

    if len(args.paths) == 2 and not args.is_clip:
        out = merge_model_folder(*args.paths, dtype=args.torch_dtype, max_shard_size=args.max_shard_size,
                                 force=args.force)
    elif len(args.paths) == 3:
        out = merge_plain_adapter(*args.paths, is_clip=args.is_clip, dtype=args.torch_dtype,
                                  max_shard_size=args.max_shard_size, force=args.force)
    else:
        raise UserInputError(f"give SRC OUT, or BASE ADAPTER OUT (--is_clip needs all three); got {args.paths}")
    print(f"merged model written to {out}", file=sys.stderr)
    return 0
