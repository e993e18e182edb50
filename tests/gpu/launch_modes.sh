#!/usr/bin/env bash
# GPU check of training: a few steps of each launch mode (single GPU, DeepSpeed ZeRO-2/3, FSDP; stage 1, QLoRA,
# full) through `accelerate launch`, on the demo's tiny model in bf16, then every output reloaded the way users
# load it (tests/gpu/verify_outputs.py). `pytest tests/gpu` runs it where CUDA is available.
#
#   bash tests/gpu/launch_modes.sh [OUT_DIR]  # installs wheels from .whl/ first when that folder exists
#
# One GPU: every config runs with --num_processes 1 (ZeRO and FSDP still shard, over one rank). Each step has
# its own log under OUT_DIR; the table at the end says what ran.
set -u
out=${1:-${OUT:-gpu_check_out}}  # gets summary.txt and logs.tgz (the device tool returns few files)
logs=work_dirs/gpu_check_logs
rm -rf "$logs" && mkdir -p "$out" "$logs"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 TOKENIZERS_PARALLELISM=false
launch=(python3 -m accelerate.commands.launch)
w=work_dirs/gpu_check
rm -rf "$w" && mkdir -p "$w"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$logs/gpu.txt"
python3 - <<'EOF' | tee "$logs/versions.txt"
import importlib
for name in ("torch", "transformers", "accelerate", "peft", "bitsandbytes", "deepspeed", "datasets"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as error:
        print(f"{name} MISSING ({type(error).__name__}: {error})")
EOF

results=()
failed=0
step() {  # step NAME TIMEOUT_S command...
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  local loss
  loss=$(grep -o "'train_loss': '*[0-9.e-]*" "$logs/$name.log" | tail -1 | grep -o "[0-9.e-]*$")
  results+=("$(printf '%-16s rc=%-3s %4ss train_loss=%s' "$name" "$rc" "$((SECONDS - start))" "${loss:--}")")
  echo "${results[-1]}"
  [ $rc -eq 0 ] || { failed=1; tail -25 "$logs/$name.log"; }
  tar czf "$out/logs.tgz" -C "$logs" .
}

python3 -c "from llava_hf.demo.prepare import prepare_demo; prepare_demo('pretrain')" >"$logs/prepare.log" 2>&1 || {
  tail -20 "$logs/prepare.log"; exit 1; }
recipes=$(python3 -c "from llava_hf.demo.paths import RECIPES; print(RECIPES)")
data=work_dirs/demo/data

common=(--bf16 true --torch_dtype bfloat16 --report_to none --logging_steps 5 --max_steps 20
        --save_strategy steps --save_steps 10 --dataloader_num_workers 2)
# no data or model: the demo's stage 1 (its data, base model and recipe); stage 2 names the demo's data itself
pretrain=(examples/train.py --stage pretrain --tune_llm frozen --tune_vision_tower frozen --learning_rate 1e-3
          "${common[@]}")
finetune=(examples/train.py --config "$recipes/demo_finetune.yaml" --model_name_or_path "$w/pretrain"
          --data_path "$data/finetune.json" --image_folder "$data/images" --eval_chat_image "$data/images/pretrain_000000.jpg"
          --learning_rate 2e-4 --eval_chat_steps 10 "${common[@]}")
qlora=(--bits 4 --tune_llm lora --lora_r 64 --lora_alpha 16 --tune_vision_tower lora --vision_lora_r 16
       --vision_lora_alpha 4)
full=(--tune_llm full --tune_vision_tower frozen)
single=(--config_file accelerate_configs/single_gpu.yaml)
zero2=(--config_file accelerate_configs/deepspeed_zero2.yaml --num_processes 1)
zero3=(--config_file accelerate_configs/deepspeed_zero3.yaml --num_processes 1)
fsdp=(--config_file accelerate_configs/fsdp.yaml --num_processes 1)

step pretrain_1gpu 150 "${launch[@]}" "${single[@]}" "${pretrain[@]}" --output_dir "$w/pretrain"
step qlora_1gpu 150 "${launch[@]}" "${single[@]}" "${finetune[@]}" "${qlora[@]}" --output_dir "$w/qlora_1gpu"
step zero2_pretrain 150 "${launch[@]}" "${zero2[@]}" "${pretrain[@]}" --output_dir "$w/zero2_pretrain"
step zero2_qlora 150 "${launch[@]}" "${zero2[@]}" "${finetune[@]}" "${qlora[@]}" --output_dir "$w/zero2_qlora"
step zero2_full 150 "${launch[@]}" "${zero2[@]}" "${finetune[@]}" "${full[@]}" --output_dir "$w/zero2_full"
step zero3_pretrain 150 "${launch[@]}" "${zero3[@]}" "${pretrain[@]}" --output_dir "$w/zero3_pretrain"
step zero3_full 150 "${launch[@]}" "${zero3[@]}" "${finetune[@]}" "${full[@]}" --output_dir "$w/zero3_full"
step zero3_qlora 150 "${launch[@]}" "${zero3[@]}" "${finetune[@]}" "${qlora[@]}" --output_dir "$w/zero3_qlora"
step fsdp_full 150 "${launch[@]}" "${fsdp[@]}" "${finetune[@]}" "${full[@]}" --output_dir "$w/fsdp_full"
step verify          200 python3 tests/gpu/verify_outputs.py "$w/pretrain" "$w/zero2_pretrain" "$w/zero3_pretrain" \
  "$w/zero2_full" "$w/zero3_full" "$w/fsdp_full" "$w/zero2_full/checkpoint-10" \
  --bits4 "$w/qlora_1gpu" "$w/zero2_qlora" "$w/zero3_qlora" "$w/qlora_1gpu/checkpoint-10"
grep '^{' "$logs/verify.log" >"$logs/verify.jsonl"

echo; echo "== $(cat "$logs/gpu.txt")"; cat "$logs/versions.txt" | tr '\n' ' '; echo
printf '%s\n' "${results[@]}" | tee "$out/summary.txt"
python3 -c "
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f\"{r['folder']:<36} bits={r['bits']!s:<4}\", r.get('error') or
          f\"{r['checkpoint_mb']:>6} MB empty/nonfinite={r['empty_or_nonfinite']} answer_loss={r['answer_loss']} reply={r['reply']!r}\")
" "$logs/verify.jsonl" | tee -a "$out/summary.txt"
exit $failed
