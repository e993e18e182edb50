"""`llava-hf publish`: make a trained model self-contained, write its model card and upload it to the Hub (see
`llava_hf.export.publish`); with `--dry_run OUT`, write what would be uploaded to OUT and list it instead."""

import argparse
import sys

from .merge import add_output_arguments


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("folder", metavar="DIR", help="any folder `llava-hf merge` accepts")
    parser.add_argument("--repo_id", required=True, help="Hub repository, e.g. your-name/llava-internlm2-7b")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to upload to (created if missing; default: main)")
    parser.add_argument("--token", help="Hub token (default: the one `hf auth login` stored, or HF_TOKEN)")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME",
                        help="training dataset for the card's `datasets` (Hub id; repeat for several)")
    parser.add_argument("--base_model", action="append", default=[], metavar="NAME",
                        help="base model for the card (default: the LLM and vision encoder the model was built from, "
                             "when they are Hub ids)")
    parser.add_argument("--license", default="other", help="license id for the card (default: other, a placeholder)")
    parser.add_argument("--mmbench_result", metavar="JSON",
                        help="mmbench_result.json for the card (default: one in DIR or next to it)")
    parser.add_argument("--commit_message", help="commit message of the upload")
    parser.add_argument("--dry_run", metavar="OUT",
                        help="write the folder that would be uploaded (model card included) to OUT, list its files "
                             "and upload nothing (no network, no token)")
    add_output_arguments(parser)  # --force: with --dry_run, replace an OUT that exists and is not empty


def run(args) -> int:
    from llava_hf.errors import UserInputError
    from llava_hf.export.publish import folder_listing, publish

    if args.force and args.dry_run is None:
        raise UserInputError("--force replaces the --dry_run folder; without --dry_run nothing is written locally")
    result = publish(args.folder, args.repo_id, private=args.private, revision=args.revision, token=args.token,
                     datasets=args.dataset, base_model=args.base_model, license=args.license,
                     mmbench_result=args.mmbench_result, dtype=args.torch_dtype, max_shard_size=args.max_shard_size,
                     commit_message=args.commit_message, dry_run=args.dry_run, force=args.force)
    if args.dry_run is None:
        print(f"published {args.folder} to {args.repo_id}: {getattr(result, 'commit_url', result)}", file=sys.stderr)
        return 0
    files = folder_listing(result)
    for path, size in files:
        print(f"{size:>14}  {path}")
    print(f"dry run: {len(files)} files, {sum(size for _, size in files)} bytes in {result} would be uploaded to "
          f"{args.repo_id}; nothing was uploaded", file=sys.stderr)
    return 0
