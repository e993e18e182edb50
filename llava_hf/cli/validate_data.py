"""`llava-hf validate-data`: check LLaVA-format data before training; non-zero exit on any error.

Warnings (printed with their sample, exit 0) are what training leaves out without failing: leading `gpt`
turns, a last `human` turn without a reply (both as LLaVA and XTuner do), replies lost to truncation.
"""

import argparse

from ..errors import FAILED_CHECK, OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data_path", action="append", required=True,
                        help="LLaVA-format .json/.jsonl file; repeat for several datasets")
    parser.add_argument("--image_folder", action="append", default=[],
                        help="image folder of each --data_path, in the same order (one folder: shared by all)")
    parser.add_argument("--tokenizer", help="tokenizer folder: also check that replies survive truncation")
    parser.add_argument("--prompt_template", metavar="NAME", default="internlm2_chat",
                        help="prompt template name (with --tokenizer)")
    parser.add_argument("--max_length", type=int,
                        help="text tokens kept per sample (with --tokenizer); default: training's, "
                             "2048 minus 576 image tokens")
    parser.add_argument("--num_workers", type=int, default=16, help="threads opening image headers")
    parser.add_argument("--no_images", action="store_true", help="skip the image-file checks")
    parser.add_argument("--max_problems", type=int, default=50, help="problems printed before the summary")


def run(args: argparse.Namespace) -> int:
    from llava_hf.data.sources import pair_sources
    from llava_hf.data.tokenization import DEFAULT_MAX_LENGTH
    from llava_hf.data.validate import validate_data

    sources = pair_sources(args.data_path, args.image_folder)  # a mismatch is a usage error: exit 2
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer  # importing transformers registers InternLM2Tokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    report = validate_data(
        sources, tokenizer=tokenizer, template=args.prompt_template, max_length=args.max_length or DEFAULT_MAX_LENGTH,
        check_images=not args.no_images, num_workers=args.num_workers,
    )
    print(report.format(max_problems=args.max_problems))
    return OK if report.ok else FAILED_CHECK
