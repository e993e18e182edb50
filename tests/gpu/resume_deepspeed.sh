#!/usr/bin/env bash
# GPU check of resuming under DeepSpeed (issue 21): a padding-free LoRA stage-2 run (LLM + ViT LoRA, the varlen
# attention `--padding_free auto` picks) on the demo's tiny model, through `accelerate launch` with ZeRO-2 and with
# ZeRO-3 on one GPU. Each is run straight to step 8, and again killed with SIGKILL during step 6 (after its step-4
# checkpoint) and restarted with the same command plus `--resume_from_checkpoint auto`: the restart must continue
# from checkpoint-4 and give the straight run's losses for steps 5-8 (bf16 noise allowed).
#
#   bash tests/gpu/resume_deepspeed.sh [OUT_DIR]   # needs deepspeed (../shared/device/wheels.sh deepspeed)
set -u
out=${1:-${OUT:-gpu_resume_out}}
logs=work_dirs/gpu_resume_logs
w=work_dirs/gpu_resume
rm -rf "$logs" "$w" && mkdir -p "$out" "$logs" "$w"
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
launch=(python3 -m accelerate.commands.launch --num_processes 1)

python3 -c "from llava_hf.demo.prepare import prepare_demo; prepare_demo('pretrain')" >"$logs/prepare.log" 2>&1 || {
  tail -20 "$logs/prepare.log"; exit 1; }
base=work_dirs/demo/base
data=work_dirs/demo/data
run=(tests/train/fault_worker.py --stage finetune --llm_name_or_path "$base/llm" --vision_tower_name_or_path "$base/clip"
     --data_path "$data/finetune.json" --image_folder "$data/images" --tune_llm lora --lora_r 8 --lora_alpha 16
     --lora_dropout 0 --tune_vision_tower lora --vision_lora_r 4 --vision_lora_alpha 8
     ${PRECISION:---bf16 true --torch_dtype bfloat16} --per_device_train_batch_size 4 --max_steps 8 --save_strategy steps --save_steps 4
     --learning_rate 2e-4 --logging_steps 1 --report_to none --dataloader_num_workers 0 --seed 0)

failed=0
# A CPU dry run of this script: ZERO_STAGES=none PRECISION="--torch_dtype float32" (plain accelerate launch)
for zero in ${ZERO_STAGES:-2 3}; do
  config=(--config_file "accelerate_configs/deepspeed_zero$zero.yaml")
  [ "$zero" = none ] && config=()
  straight=$w/zero${zero}_straight
  resumed=$w/zero${zero}_resumed
  timeout 150 "${launch[@]}" "${config[@]}" "${run[@]}" --output_dir "$straight" >"$logs/zero${zero}_straight.log" 2>&1
  rc_straight=$?
  FAULTS=at-step:6:KILL timeout 150 "${launch[@]}" "${config[@]}" "${run[@]}" --output_dir "$resumed" \
    >"$logs/zero${zero}_killed.log" 2>&1
  rc_killed=$?
  timeout 150 "${launch[@]}" "${config[@]}" "${run[@]}" --output_dir "$resumed" --resume_from_checkpoint auto \
    >"$logs/zero${zero}_resume.log" 2>&1
  rc_resume=$?
  verdict=$(python3 - "$straight" "$resumed" "$logs/zero${zero}_resume.log" "$logs/zero${zero}_straight.log" <<'PY'
import json, os, sys
straight, resumed, resume_log, straight_log = sys.argv[1:]
def losses(folder):
    with open(os.path.join(folder, "trainer_state.json")) as f:
        return {h["step"]: h["loss"] for h in json.load(f)["log_history"] if "loss" in h}
problems = []
log = open(resume_log).read()
if f"resumed from {resumed}/checkpoint-4: step 4" not in log:
    problems.append("did not resume from checkpoint-4")
if "rows: padding-free" not in open(straight_log).read():
    problems.append("the run did not use padding-free rows")
try:
    a, b = losses(straight), losses(resumed)
    for step in (5, 6, 7, 8):
        if step not in b or abs(a[step] - b[step]) > 0.02 * max(abs(a[step]), 1e-3):
            problems.append(f"step {step}: straight {a.get(step)} resumed {b.get(step)}")
    print("ok" if not problems else "; ".join(problems), {s: (a.get(s), b.get(s)) for s in (5, 8)})
except Exception as error:  # report, then fail
    print(f"{type(error).__name__}: {error}", "; ".join(problems))
PY
)
  line="zero$zero straight rc=$rc_straight killed rc=$rc_killed (nonzero expected) resume rc=$rc_resume: $verdict"
  echo "$line" | tee -a "$out/resume_summary.txt"
  if [ $rc_straight -ne 0 ] || [ $rc_resume -ne 0 ] || [[ $verdict != ok* ]]; then
    failed=1
    tail -30 "$logs/zero${zero}_resume.log"
  fi
done
tar czf "$out/resume_logs.tgz" -C "$logs" .
exit $failed
