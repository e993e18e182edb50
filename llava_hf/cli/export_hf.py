"""`llava-hf export-hf`: a stock `transformers.LlavaForConditionalGeneration` folder (see
`llava_hf.export.stock_llava`) that plain transformers, vLLM, SGLang and TGI load without llava_hf."""

import argparse
import sys

from .merge import add_output_arguments
from .user_errors import USER_ERRORS, report_user_error


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("src", metavar="SRC", help="any folder `llava-hf merge` accepts (adapters are merged first)")
    parser.add_argument("out", metavar="OUT", help="the LlavaForConditionalGeneration folder to write")
    add_output_arguments(parser)


def run(args) -> int:
    from llava_hf.export.stock_llava import export_stock_llava

    try:
        out = export_stock_llava(args.src, args.out, dtype=args.dtype, max_shard_size=args.max_shard_size,
                                 force=args.force)
    except USER_ERRORS as error:
        return report_user_error("export-hf", error)
    print(f"stock LlavaForConditionalGeneration folder written to {out}", file=sys.stderr)
    return 0
