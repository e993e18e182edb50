"""`llava-hf export-hf`: a stock `transformers.LlavaForConditionalGeneration` folder (see
`llava_hf.export.stock_llava`) that plain transformers, vLLM, SGLang and TGI load without llava_hf."""

import argparse
import sys

from .merge import add_output_arguments


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("src", metavar="SRC", help="any folder `llava-hf merge` accepts (adapters are merged first)")
    parser.add_argument("out", metavar="OUT", help="the LlavaForConditionalGeneration folder to write")
    add_output_arguments(parser)


def run(args) -> int:
    from llava_hf.export.stock_llava import export_stock_llava

    out = export_stock_llava(args.src, args.out, dtype=args.torch_dtype, max_shard_size=args.max_shard_size,
                             force=args.force)
    print(f"stock LlavaForConditionalGeneration folder written to {out}", file=sys.stderr)
    return 0
