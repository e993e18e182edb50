"""Chat with a trained model in the terminal: `python examples/chat.py [MODEL] [--image PATH] [--prompt TEXT]`.

The same as `llava-hf chat`; see `llava-hf chat --help` for every option. With no MODEL it opens the demo's
finetuned model (train it first with `accelerate launch examples/train.py`).
"""

import sys

from llava_hf.cli.main import script_main

if __name__ == "__main__":
    sys.exit(script_main("chat"))
