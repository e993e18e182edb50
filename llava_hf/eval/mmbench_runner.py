"""Run a model over an MMBench TSV: batched greedy generation, sharded across accelerate processes, resumable.

Each process takes rows `rank::world` and appends `{index, prediction, prompt}` lines to its own
`predictions.part-<rank>.jsonl`, flushed per batch. On start every process reads all prediction files already in
the work dir and skips those rows, so an interrupted run (any number of processes) continues where it stopped.
When all processes are done the main one merges (dedupe by index, the index set must equal the TSV's), writes
the final `predictions.jsonl`, `mmbench_result.xlsx` and, for dev files, `mmbench_result.json`.
"""

from __future__ import annotations

import glob
import json
import os

import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from ..inference.chat_session import cut_at_stop_words
from ..models.llava_internlm2.processing_llava_internlm2 import chat_stop_token_ids
from .mmbench_data import MMBenchData, build_prompt, decode_image
from .mmbench_scoring import check_prediction_coverage, format_report, match_predictions, score_mmbench
from .mmbench_submission import write_submission
from .predictions_io import append_jsonl, atomic_write_text, read_jsonl_records, write_jsonl

PREDICTIONS_FILE = "predictions.jsonl"
PART_FILE = "predictions.part-{rank}.jsonl"
RESULT_JSON = "mmbench_result.json"
RESULT_XLSX = "mmbench_result.xlsx"
SETTINGS_FILE = "run_settings.json"


def chat_prompts(data: MMBenchData, processor, template=None, lang: str = "auto") -> list[str]:
    """The full text fed to the processor for every row: the LLaVA/XTuner user turn inside a chat template.

    By default the model's own chat template (no system prompt); a `PromptTemplate` from
    `llava_hf.data.templates` instead uses only its INSTRUCTION, as `xtuner mmbench` does.
    """
    frame = data.frame
    user_turns = [build_prompt(frame.iloc[p], data.option_letters, lang) for p in range(len(frame))]
    if template is not None:
        return [template.instruction.format(input=text, round=1) for text in user_turns]
    return [processor.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                          tokenize=False) for text in user_turns]


def resolve_template(prompt_template: str | None, tokenizer):
    if prompt_template is None:
        return None
    from llava_hf.data.templates import get_template

    return get_template(prompt_template, tokenizer)


def generate_batch(model, processor, prompts: list[str], images: list, *, max_new_tokens: int,
                   stop_words=()) -> list[str]:
    """Greedy answers for one left-padded batch, decoded without the prompt and stripped."""
    tokenizer = processor.tokenizer
    bos = tokenizer.bos_token
    has_bos = bool(bos) and all(p.startswith(bos) for p in prompts)  # chat templates that write BOS themselves
    inputs = processor(images=images, text=prompts, padding=True, return_tensors="pt", pad_to_square=True,
                       add_special_tokens=not has_bos)  # pad to square always, as LLaVA-1.5 and XTuner evaluate
    inputs = inputs.to(model.device, dtype=model.dtype) if "pixel_values" in inputs else inputs.to(model.device)
    kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "eos_token_id": chat_stop_token_ids(tokenizer),
              "pad_token_id": tokenizer.pad_token_id}
    if stop_words:
        kwargs.update(stop_strings=list(stop_words), tokenizer=tokenizer)
    with torch.inference_mode():
        output = model.generate(**inputs, **kwargs)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [cut_at_stop_words(text, stop_words).strip() for text in texts]


def prediction_files(work_dir: str) -> list[str]:
    final = os.path.join(work_dir, PREDICTIONS_FILE)
    parts = sorted(glob.glob(os.path.join(work_dir, PART_FILE.format(rank="*"))))
    return ([final] if os.path.exists(final) else []) + parts


def collect_records(data: MMBenchData, work_dir: str, prompts: list[str] | None = None) -> dict[int, dict]:
    """Every row already predicted in `work_dir`, checked against this TSV (and prompts, when given)."""
    indices = data.frame["index"].tolist()
    expected_prompt = dict(zip(indices, prompts)) if prompts is not None else None
    known = set(indices)
    records: dict[int, dict] = {}
    for path in prediction_files(work_dir):
        for record in read_jsonl_records(path):
            index = int(record["index"])
            if index not in known:
                raise ValueError(f"{path}: index {index} is not in {data.path}; use a fresh --work_dir for "
                                 f"another TSV")
            if expected_prompt is not None and "prompt" in record and record["prompt"] != expected_prompt[index]:
                raise ValueError(f"{path}: row {index} was predicted with a different prompt (another model, "
                                 f"template or TSV); use a fresh --work_dir")
            records.setdefault(index, record)
    return records


def process_state() -> PartialState:
    """accelerate's view of the launch; on a machine without an accelerator several processes (from
    `accelerate launch --multi_gpu` or `torchrun`) still form a gloo group instead of running unsharded."""
    return PartialState(cpu=not torch.accelerator.is_available())


def check_run_settings(work_dir: str, settings: dict | None) -> None:
    """Refuse to resume a run whose predictions came from another model or other generation settings."""
    path = os.path.join(work_dir, SETTINGS_FILE)
    if settings is None or not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as stream:
        previous = json.load(stream)
    changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
    if changed:
        details = ", ".join(f"{k}: {previous.get(k)!r} -> {settings.get(k)!r}" for k in changed)
        raise ValueError(f"{work_dir} holds predictions made with other settings ({details}); "
                         f"use a fresh --work_dir")


def run_mmbench(model, processor, data: MMBenchData, work_dir: str, *, batch_size: int = 8,
                max_new_tokens: int = 100, prompt_template: str | None = None, lang: str = "auto",
                seed: int = 0, settings: dict | None = None, state: PartialState | None = None) -> dict | None:
    """Predict every row not yet predicted, merge and write the outputs; returns the scores on the main
    process of a dev file, else None. `settings` (model, dtype, ...) is stored and must match on resume."""
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be >= 1")
    state = state or process_state()
    torch.manual_seed(seed)
    processor.tokenizer.padding_side = "left"
    template = resolve_template(prompt_template, processor.tokenizer)
    prompts = chat_prompts(data, processor, template, lang)
    stop_words = list(template.stop_words) if template is not None else []
    check_run_settings(work_dir, settings)
    done = collect_records(data, work_dir, prompts)
    state.wait_for_everyone()  # everyone has read the old files before any is rewritten
    if state.is_main_process and settings is not None:
        atomic_write_text(os.path.join(work_dir, SETTINGS_FILE), json.dumps(settings, indent=2) + "\n")

    part_path = os.path.join(work_dir, PART_FILE.format(rank=state.process_index))
    if os.path.exists(part_path):  # drop a line cut short by a crash before appending to the file
        write_jsonl(part_path, read_jsonl_records(part_path))
    indices = data.frame["index"].tolist()
    todo = [p for p in range(state.process_index, len(data), state.num_processes) if indices[p] not in done]
    os.makedirs(work_dir, exist_ok=True)
    with open(part_path, "a", encoding="utf-8") as stream, \
            tqdm(total=len(todo), desc=f"MMBench rank {state.process_index}", disable=not todo) as progress:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            images = [decode_image(data.frame["image"].iat[p], where=f"{data.path}: row with index {indices[p]}")
                      for p in batch]
            answers = generate_batch(model, processor, [prompts[p] for p in batch], images,
                                     max_new_tokens=max_new_tokens, stop_words=stop_words)
            append_jsonl(stream, [{"index": indices[p], "prediction": a, "prompt": prompts[p]}
                                  for p, a in zip(batch, answers)])
            progress.update(len(batch))
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    records = collect_records(data, work_dir, prompts)
    return write_outputs(data, {i: r["prediction"] for i, r in records.items()}, work_dir,
                         prompts=dict(zip(indices, prompts)))


def write_outputs(data: MMBenchData, predictions: dict[int, str], work_dir: str, *,
                  prompts: dict[int, str] | None = None) -> dict | None:
    """Final predictions.jsonl (TSV order, parsed letters), the submission xlsx, and the scores on dev files.

    Also the whole of `--predictions FILE` rescoring. Part files are removed only after the merged file exists.
    """
    if data.has_answer:
        result, matches = score_mmbench(data, predictions)  # checks the index set first
    else:
        check_prediction_coverage(data, predictions, work_dir)
        result, matches = None, match_predictions(data, predictions)
    records = []
    for row in matches.to_dict("records"):
        record = {"index": int(row["index"]), "prediction": row["prediction"], "parsed": row["parsed"]}
        if data.has_answer:
            record.update(answer=row["answer"], correct=bool(row["correct"]))
        if prompts is not None:
            record["prompt"] = prompts[record["index"]]
        records.append(record)
    os.makedirs(work_dir, exist_ok=True)
    write_jsonl(os.path.join(work_dir, PREDICTIONS_FILE), records)
    for part in glob.glob(os.path.join(work_dir, PART_FILE.format(rank="*"))):
        os.remove(part)
    write_submission(data, predictions, os.path.join(work_dir, RESULT_XLSX))
    if result is None:
        print(f"{data.path} has no answers (test split): submit {os.path.join(work_dir, RESULT_XLSX)} at "
              f"https://mmbench.opencompass.org.cn/mmbench-submission")
        return None
    atomic_write_text(os.path.join(work_dir, RESULT_JSON), json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(format_report(result))
    return result
