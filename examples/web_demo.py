"""Web demo (Gradio) for a trained model: `python examples/web_demo.py [MODEL] [--port 7860]`.

The same as `llava-hf serve`; needs `pip install -e ".[web]"`. Open the printed address, attach an image, ask.
"""

import sys

from llava_hf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
