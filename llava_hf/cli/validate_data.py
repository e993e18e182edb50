"""`llava-hf validate-data`: check LLaVA-format data before training; non-zero exit on any error.

Warnings (printed with their sample, exit 0) are what training leaves out without failing: leading `gpt`
turns, a last `human` turn without a reply (both as LLaVA and XTuner do), replies lost to truncation.
"""

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-path", action="append", required=True,
                        help="LLaVA-format .json/.jsonl file; repeat for several datasets")
    parser.add_argument("--image-folder", action="append", default=[],
                        help="image folder of each --data-path, in the same order (one folder: shared by all)")
    parser.add_argument("--tokenizer", help="tokenizer folder: also check that replies survive truncation")
    parser.add_argument("--template", default="internlm2_chat", help="prompt template name (with --tokenizer)")
    parser.add_argument("--max-length", type=int, default=1472, help="text tokens kept per sample (with --tokenizer)")
    parser.add_argument("--num-workers", type=int, default=16, help="threads opening image headers")
    parser.add_argument("--no-images", action="store_true", help="skip the image-file checks")
    parser.add_argument("--max-problems", type=int, default=50, help="problems printed before the summary")


def run(args: argparse.Namespace) -> int:
    from llava_hf.data.sources import DataSource
    from llava_hf.data.validate import validate_data

    folders = args.image_folder
    if len(folders) == 1:
        folders = folders * len(args.data_path)
    elif not folders:
        folders = [None] * len(args.data_path)
    elif len(folders) != len(args.data_path):
        print(f"error: {len(args.data_path)} --data-path but {len(folders)} --image-folder; give one folder, "
              "or one per data path", file=sys.stderr)
        return 2
    tokenizer = None
    if args.tokenizer:
        import llava_hf  # noqa: F401  (registers InternLM2Tokenizer)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    report = validate_data(
        [DataSource(path, folder) for path, folder in zip(args.data_path, folders)], tokenizer=tokenizer,
        template=args.template, max_length=args.max_length, check_images=not args.no_images,
        num_workers=args.num_workers,
    )
    print(report.format(max_problems=args.max_problems))
    return 0 if report.ok else 1
