"""Train a LLaVA-style model, stage 1 (`--stage pretrain`) or stage 2 (`--stage finetune`).

    accelerate launch examples/train.py --stage pretrain                       # the built-in demo
    accelerate launch examples/train.py --config examples/recipes/llava_internlm2_chat_7b_pretrain.yaml
    accelerate launch --config_file accelerate_configs/deepspeed_zero2.yaml examples/train.py --config ... \
        --per_device_train_batch_size 16

Every flag of `llava_hf.train.arguments` (and of HF `TrainingArguments`) can be given on the command line or
in a YAML recipe (`--config`); flags win. `--help` lists ours first.

An output folder that already holds a finished model is refused (one line, before anything loads): pass
`--overwrite_output_dir` to train it again, or another `--output_dir`. A user mistake prints one `train.py: error:`
line and exits with status 2. `accelerate launch` reports any failing script as status 1 and adds its own traceback;
`accelerate launch -q` leaves that out, and a config file (`--config_file`, `accelerate config`) or the values
`--num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no` keep its defaults warning out.
"""

import sys

from llava_hf.train.run import main

if __name__ == "__main__":
    sys.exit(main())
