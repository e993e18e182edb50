"""`llava-hf publish`: make a trained model self-contained, write its model card and upload it to the Hub (see
`llava_hf.export.publish`)."""

import argparse
import sys

from .merge import add_output_arguments


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("folder", metavar="DIR", help="any folder `llava-hf merge` accepts")
    parser.add_argument("--repo-id", required=True, help="Hub repository, e.g. your-name/llava-internlm2-7b")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to upload to (created if missing; default: main)")
    parser.add_argument("--token", help="Hub token (default: the one `hf auth login` stored, or HF_TOKEN)")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME",
                        help="training dataset for the card's `datasets` (Hub id; repeat for several)")
    parser.add_argument("--base-model", action="append", default=[], metavar="NAME",
                        help="base model for the card (default: the LLM and CLIP the model was built from, "
                             "when they are Hub ids)")
    parser.add_argument("--license", default="other", help="license id for the card (default: other, a placeholder)")
    parser.add_argument("--mmbench-result", metavar="JSON",
                        help="mmbench_result.json for the card (default: one in DIR or next to it)")
    parser.add_argument("--commit-message", help="commit message of the upload")
    add_output_arguments(parser, out_folder=False)


def run(args) -> int:
    from llava_hf.export.publish import publish

    commit = publish(args.folder, args.repo_id, private=args.private, revision=args.revision, token=args.token,
                     datasets=args.dataset, base_model=args.base_model, license=args.license,
                     mmbench_result=args.mmbench_result, dtype=args.torch_dtype, max_shard_size=args.max_shard_size,
                     commit_message=args.commit_message)
    print(f"published {args.folder} to {args.repo_id}: {getattr(commit, 'commit_url', commit)}", file=sys.stderr)
    return 0
