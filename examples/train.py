"""Train a LLaVA-style model, stage 1 (`--stage pretrain`) or stage 2 (`--stage finetune`).

    accelerate launch examples/train.py --stage pretrain                       # the built-in demo
    accelerate launch examples/train.py --config examples/recipes/llava_internlm2_chat_7b_pretrain.yaml
    accelerate launch --config_file accelerate_configs/deepspeed_zero2.yaml examples/train.py --config ... \
        --per_device_train_batch_size 16

Every flag of `llava_hf.train.arguments` (and of HF `TrainingArguments`) can be given on the command line or
in a YAML recipe (`--config`); flags win.
"""

import sys

from llava_hf.train.run import main

if __name__ == "__main__":
    sys.exit(main())
