"""`llava-hf import-xtuner`: XTuner's `pth_to_hf` LLaVA folder (projector/, llm_adapter/, visual_encoder_adapter/,
or full llm/ / visual_encoder/) in our format (see `llava_hf.export.xtuner_import`)."""

import argparse
import sys

from .merge import add_output_arguments


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("out", metavar="OUT", help="the folder to write")
    parser.add_argument("--llava", required=True, metavar="XTUNER_DIR", help="XTuner's pth_to_hf output")
    parser.add_argument("--llm", metavar="LLM_DIR",
                        help="the LLM XTuner trained on (not needed when XTUNER_DIR holds the full LLM)")
    parser.add_argument("--visual_encoder", metavar="CLIP_DIR",
                        help="the CLIP XTuner trained on (not needed when XTUNER_DIR has visual_encoder/)")
    parser.add_argument("--keep_adapters", action="store_true",
                        help="keep the LoRA weights as one PEFT adapter over OUT/base instead of merging them")
    add_output_arguments(parser)


def run(args) -> int:
    from llava_hf.export.xtuner_import import import_xtuner

    out = import_xtuner(args.out, args.llava, llm=args.llm, visual_encoder=args.visual_encoder,
                        keep_adapters=args.keep_adapters, dtype=args.torch_dtype, max_shard_size=args.max_shard_size,
                        force=args.force)
    print(f"XTuner model imported to {out}", file=sys.stderr)
    return 0
