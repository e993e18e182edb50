"""`llava-hf chat`: talk to a trained model in the terminal, or script it.

Interactive (stdin is a terminal): streamed answers, `/image PATH` adds an image to the next turn (repeat it for
several; any turn may bring images, each goes where the next message starts), `/reset`
starts over, `/exit` (or Ctrl-D) quits, Ctrl-C stops the current answer. Scripted: `--prompt TEXT` answers
once; otherwise each stdin line is a turn. stdout carries only answers, everything else goes to stderr.
"""

import argparse
import functools
import os
import sys

from llava_hf.demo.paths import DEMO_FINETUNE
from llava_hf.dtypes import DTYPE_CHOICES

COMMANDS_HELP = "commands: /image PATH (an image for the next turn; repeat for several), /reset (new conversation), /exit"


def add_arguments(parser: argparse.ArgumentParser):
    add_model_arguments(parser)
    parser.add_argument("--image", action="append", default=[], metavar="PATH_OR_URL",
                        help="image for the first turn (repeat for several)")
    parser.add_argument("--prompt", help="answer this one message and exit")
    add_conversation_arguments(parser)
    parser.add_argument("--no_streamer", action="store_true", help="print each answer when it is complete")


def add_model_arguments(parser: argparse.ArgumentParser):
    """Options shared with `llava-hf serve`: which model, and how to load it."""
    parser.add_argument("model", nargs="?", default=None, metavar="MODEL",
                        help="model folder, training output with an adapter, or (with --visual_encoder and --llava) "
                             f"an LLM folder; default: the demo's finetuned model {DEMO_FINETUNE}")
    parser.add_argument("--visual_encoder", metavar="CLIP", help="CLIP folder, for an XTuner-style --llava folder")
    parser.add_argument("--llava", metavar="DIR", help="XTuner pth_to_hf output (projector/, *_adapter/)")
    parser.add_argument("--bits", type=int, choices=(4, 8), help="load the LLM quantized (bitsandbytes, CUDA only)")
    parser.add_argument("--torch_dtype", default="auto", choices=DTYPE_CHOICES,
                        help="weights dtype (auto: as stored)")


def add_conversation_arguments(parser: argparse.ArgumentParser):
    """Options shared with `llava-hf serve`: prompt format and generation settings."""
    parser.add_argument("--prompt_template", metavar="NAME",
                        help="XTuner-style template from llava_hf.data.templates (e.g. internlm2_chat); "
                             "default: the model's own chat template")
    parser.add_argument("--system", help="system prompt (none by default, as in training)")
    parser.add_argument("--max_new_tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float,
                        help="0 for greedy decoding; > 0 samples (default: the model's generation_config)")
    parser.add_argument("--top_p", type=float)
    parser.add_argument("--top_k", type=int)
    parser.add_argument("--repetition_penalty", type=float)
    parser.add_argument("--seed", type=int, help="random seed for sampling")
    parser.add_argument("--stop_words", nargs="+", default=[], metavar="WORD", help="end an answer at these words")


def generation_options(args) -> dict:
    """`generate` keyword arguments for what the user set; the model's generation_config covers the rest."""
    options = {"max_new_tokens": args.max_new_tokens}
    if args.temperature is not None:
        options["do_sample"] = args.temperature > 0
        if args.temperature > 0:
            options["temperature"] = args.temperature
    for name in ("top_p", "top_k", "repetition_penalty"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def session_factory(args):
    """Load the model once; return a function that starts a new `ChatSession` with the options given.

    `UserInputError` for user mistakes (missing folder, unknown template, --bits without CUDA).
    """
    from transformers import set_seed

    from llava_hf.data.templates import CHAT_TEMPLATE, get_template
    from llava_hf.errors import UserInputError
    from llava_hf.inference import ChatSession, load_model_and_processor

    model_path = args.model
    if model_path is None:
        if not os.path.isdir(DEMO_FINETUNE):
            raise UserInputError(f"no MODEL given and the demo model {DEMO_FINETUNE} does not exist; "
                                 "train it first (accelerate launch examples/train.py) or pass a model folder")
        model_path = DEMO_FINETUNE
    template = None  # the model's own chat template
    if args.prompt_template not in (None, CHAT_TEMPLATE):
        try:
            template = get_template(args.prompt_template)
        except ValueError as error:
            raise UserInputError(f"--prompt_template: {error}") from None
    if args.seed is not None:
        set_seed(args.seed)
    model, processor = load_model_and_processor(model_path, visual_encoder=args.visual_encoder, llava=args.llava,
                                                torch_dtype=args.torch_dtype, bits=args.bits)
    return functools.partial(ChatSession, model, processor, template=template, system=args.system,
                             generation_options=generation_options(args), stop_words=args.stop_words)


def run(args) -> int:
    from llava_hf.inference import open_image

    images = [open_image(path) for path in args.image]  # before the (slow) model load
    session = session_factory(args)()
    for image in images:
        session.add_image(image)
    if args.prompt is not None:
        answer(session, args.prompt, stream=not args.no_streamer)
    elif sys.stdin.isatty():
        interactive_loop(session, stream=not args.no_streamer)
    else:
        scripted_loop(session, stream=not args.no_streamer)
    return 0


def answer(session, text: str, stream: bool):
    """Print the answer to `text` on stdout (as it streams, unless `stream` is False)."""
    if stream:
        for piece in session.stream_reply(text):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        sys.stdout.write(session.reply(text) + "\n")
    sys.stdout.flush()


def handle_command(session, line: str) -> bool:
    """Run a `/command`; False means exit. Unknown commands and bad images are reported, not fatal."""
    from llava_hf.errors import UserInputError
    from llava_hf.inference import open_image

    command, _, argument = line.partition(" ")
    if command in ("/exit", "/quit"):
        return False
    if command == "/reset":
        session.reset()
        print("(new conversation)", file=sys.stderr)
    elif command == "/image" and argument.strip():
        try:
            session.add_image(open_image(argument.strip()))
            print(f"(image {argument.strip()} goes with your next message)", file=sys.stderr)
        except UserInputError as error:
            print(f"error: {error}", file=sys.stderr)
    else:
        print(COMMANDS_HELP, file=sys.stderr)
    return True


def scripted_loop(session, stream: bool):
    """Each stdin line is a turn (commands work too); a bad `/image` line stops with an error."""
    from llava_hf.inference import open_image

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if line.startswith("/image "):
            session.add_image(open_image(line.partition(" ")[2].strip()))  # UserInputError ends the script
        elif line.startswith("/"):
            if not handle_command(session, line):
                return
        else:
            answer(session, line, stream)


def interactive_loop(session, stream: bool):
    print(f"Chatting. {COMMANDS_HELP}. Ctrl-C stops an answer, Ctrl-D quits.", file=sys.stderr)
    prompt_to_stdout = sys.stdout.isatty()
    while True:
        try:
            if not prompt_to_stdout:
                print(">>> ", end="", file=sys.stderr, flush=True)
            line = input(">>> " if prompt_to_stdout else "").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return
        if not line:
            continue
        if line.startswith("/"):
            if not handle_command(session, line):
                return
            continue
        try:
            answer(session, line, stream)
        except KeyboardInterrupt:
            print("\n(stopped)", file=sys.stderr)
