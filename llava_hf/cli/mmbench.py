"""`llava-hf mmbench` / `examples/mmbench.py`: MMBench (dev: scores; test: submission file) for a trained model.

`accelerate launch examples/mmbench.py ...` shards the rows across processes; an interrupted run resumes from
the predictions already in `--work_dir`; `--predictions FILE` rescores without a model. With no arguments it
evaluates the demo's finetuned model on the demo TSV.
"""

import argparse
import os
import sys

from llava_hf.demo.paths import DEMO_FINETUNE, DEMO_MMBENCH_TSV, DEMO_MMBENCH_WORK_DIR

DEMO_MISSING = ("the demo model ({model}) or TSV ({tsv}) does not exist; run `accelerate launch "
                "examples/train.py --stage pretrain` and `accelerate launch examples/train.py --stage finetune` "
                "first, or pass MODEL and --data_path")


def add_arguments(parser: argparse.ArgumentParser):
    from llava_hf.cli.chat import add_model_arguments

    add_model_arguments(parser)  # MODEL, --visual_encoder, --llava, --bits, --torch_dtype (shared with chat)
    parser.add_argument("--data_path", metavar="TSV",
                        help=f"MMBench/CCBench TSV in VLMEvalKit format (default with no MODEL: {DEMO_MMBENCH_TSV})")
    parser.add_argument("--work_dir", metavar="DIR",
                        help="outputs and resumable predictions (default: work_dirs/mmbench/<model>/<tsv name>)")
    parser.add_argument("--predictions", metavar="FILE",
                        help="rescore this predictions.jsonl (or xlsx with index/prediction columns); no model")
    parser.add_argument("--prompt_template", metavar="NAME",
                        help="XTuner-style template from llava_hf.data.templates; default: the model's chat template")
    parser.add_argument("--lang", choices=("auto", "en", "cn"), default="auto",
                        help="answer instruction language; auto: Chinese when the prompt has Han characters (XTuner)")
    parser.add_argument("--max_new_tokens", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=8, help="rows per generate call, per process")
    parser.add_argument("--seed", type=int, default=0)


def default_work_dir(model: str | None, data_path: str) -> str:
    stem = os.path.splitext(os.path.basename(data_path))[0]
    name = os.path.basename(os.path.normpath(model)) if model else "predictions"
    return os.path.join("work_dirs", "mmbench", name, stem)


def run(args) -> int:
    from llava_hf.eval.mmbench_data import load_mmbench_tsv
    from llava_hf.eval.mmbench_runner import process_state, write_outputs
    from llava_hf.eval.predictions_io import load_predictions

    from llava_hf.errors import UserInputError

    demo = args.model is None and args.data_path is None and args.predictions is None
    if demo and not (os.path.isdir(DEMO_FINETUNE) and os.path.isfile(DEMO_MMBENCH_TSV)):
        raise UserInputError(DEMO_MISSING.format(model=DEMO_FINETUNE, tsv=DEMO_MMBENCH_TSV))
    if not demo and args.data_path is None:
        raise UserInputError("--data_path TSV is required (the demo defaults apply only when no MODEL is given)")
    if args.model is not None and args.predictions is not None:
        raise UserInputError("give MODEL to run it, or --predictions FILE to rescore without a model, not both")
    model_path = DEMO_FINETUNE if demo else args.model
    data_path = DEMO_MMBENCH_TSV if demo else args.data_path
    work_dir = args.work_dir or (DEMO_MMBENCH_WORK_DIR if demo else default_work_dir(model_path, data_path))
    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise UserInputError("--batch_size and --max_new_tokens must be >= 1")
    data = load_mmbench_tsv(data_path)  # validated before anything expensive
    if args.predictions is not None:
        if process_state().is_main_process:  # launched with several processes: rescore once
            write_outputs(data, load_predictions(args.predictions), work_dir)
        return 0
    return evaluate(args, model_path, data, work_dir)


def evaluate(args, model_path: str, data, work_dir: str) -> int:
    from llava_hf.data.templates import CHAT_TEMPLATE, get_template
    from llava_hf.eval.mmbench_runner import check_run_settings, process_state, run_mmbench
    from llava_hf.inference import load_model_and_processor

    state = process_state()
    settings = {"model": os.path.abspath(model_path), "visual_encoder": args.visual_encoder, "llava": args.llava,
                "bits": args.bits, "torch_dtype": args.torch_dtype, "prompt_template": args.prompt_template,
                "lang": args.lang, "max_new_tokens": args.max_new_tokens}
    check_run_settings(work_dir, settings)  # before the slow model load
    if args.prompt_template not in (None, CHAT_TEMPLATE):
        get_template(args.prompt_template)  # an unknown name fails now, not after loading
    device_map = {"": state.device} if state.device.type != "cpu" else None
    model, processor = load_model_and_processor(model_path, visual_encoder=args.visual_encoder, llava=args.llava,
                                                torch_dtype=args.torch_dtype, bits=args.bits, device_map=device_map)
    run_mmbench(model, processor, data, work_dir, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                prompt_template=args.prompt_template, lang=args.lang, seed=args.seed, settings=settings, state=state)
    if state.is_main_process:
        print(f"outputs in {work_dir}", file=sys.stderr)
    return 0
