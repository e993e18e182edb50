"""`llava-hf serve`: the Gradio web demo for a model (same model and generation options as `llava-hf chat`)."""

import argparse
import sys

from .chat import add_conversation_arguments, add_model_arguments


def add_arguments(parser: argparse.ArgumentParser):
    add_model_arguments(parser)
    add_conversation_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for the network)")
    parser.add_argument("--port", type=int, default=7860)


def run(args) -> int:
    from llava_hf.errors import UserInputError

    from .chat import session_factory

    try:
        from llava_hf.inference.web_demo import build_demo
    except ImportError as error:
        raise UserInputError(f"the web demo needs gradio: pip install 'llava_hf[web]' ({error})") from None
    new_session = session_factory(args)
    demo = build_demo(new_session)
    print(f"Serving on http://{args.host}:{args.port} (Ctrl-C stops)", file=sys.stderr)
    try:
        demo.queue().launch(server_name=args.host, server_port=args.port, quiet=True)
    except KeyboardInterrupt:
        pass
    return 0
