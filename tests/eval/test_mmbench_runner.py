import json
import multiprocessing
import os
import socket

import pytest

from llava_hf.cli.main import main
from llava_hf.eval.mmbench_data import load_mmbench_tsv
from llava_hf.eval.mmbench_runner import (
    PART_FILE,
    chat_prompts,
    generate_batch,
    process_state,
    run_mmbench,
)
from llava_hf.eval.mmbench_scoring import score_mmbench
from llava_hf.eval.predictions_io import read_jsonl_records, write_jsonl
from tests.eval.fake_mmbench_model import fake_model_answering
from tests.eval.mmbench_fixtures import HANDMADE_PREDICTIONS, strict_json


def test_run_scores_and_writes_every_output(dev_tsv, tmp_path):
    data = load_mmbench_tsv(dev_tsv)
    model, processor = fake_model_answering(data, HANDMADE_PREDICTIONS)
    result = run_mmbench(model, processor, data, str(tmp_path), batch_size=4)
    assert result == score_mmbench(data, HANDMADE_PREDICTIONS)[0]
    assert json.loads((tmp_path / "mmbench_result.json").read_text()) == result
    records = read_jsonl_records(str(tmp_path / "predictions.jsonl"))
    assert [r["index"] for r in records] == data.frame["index"].tolist()  # TSV order
    assert records[2] == {"index": 2000001, "prediction": "The answer is A.", "parsed": "A", "answer": "D",
                          "correct": False, "prompt": chat_prompts(data, processor)[2]}
    assert (tmp_path / "mmbench_result.xlsx").exists() and not list(tmp_path.glob("predictions.part-*"))
    assert [c["batch"] for c in processor.calls] == [4, 4, 4, 1]
    assert not any(c["add_special_tokens"] for c in processor.calls)  # the chat template already wrote BOS
    assert all(c["pad_to_square"] is True for c in processor.calls)


def test_predictions_file_is_strict_json_and_rescores_to_the_same_result(dev_tsv, test_tsv, tmp_path):
    data = load_mmbench_tsv(dev_tsv)  # empty hints and options (NaN in pandas), and one unparsable answer
    model, processor = fake_model_answering(data, HANDMADE_PREDICTIONS)
    result = run_mmbench(model, processor, data, str(tmp_path / "run"))
    lines = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    records = [strict_json(line) for line in lines]
    assert [r["parsed"] for r in records if r["index"] == 3] == [None]  # "I am not sure." matches no option
    assert main(["mmbench", "--predictions", str(tmp_path / "run" / "predictions.jsonl"), "--data_path", dev_tsv,
                 "--work_dir", str(tmp_path / "rescored")]) == 0
    assert json.loads((tmp_path / "rescored" / "mmbench_result.json").read_text()) == result
    assert (tmp_path / "rescored" / "predictions.jsonl").read_text().splitlines() == [
        json.dumps({k: v for k, v in r.items() if k != "prompt"}, ensure_ascii=False) for r in records]

    test_data = load_mmbench_tsv(test_tsv)  # no answers: the parsed letters are the submission's
    run_mmbench(*fake_model_answering(test_data, HANDMADE_PREDICTIONS), test_data, str(tmp_path / "test"))
    assert [strict_json(line)["parsed"] for line in (tmp_path / "test" / "predictions.jsonl").read_text()
            .splitlines()].count(None) == 1


def test_resume_predicts_only_missing_rows(dev_tsv, tmp_path):
    data = load_mmbench_tsv(dev_tsv)
    model, processor = fake_model_answering(data, HANDMADE_PREDICTIONS)
    prompts = dict(zip(data.frame["index"], chat_prompts(data, processor)))
    done = [1, 1000001, 2000001, 3000001, 2]
    part = tmp_path / PART_FILE.format(rank=3)  # left by an interrupted run with more processes
    write_jsonl(str(part), [{"index": i, "prediction": HANDMADE_PREDICTIONS[i], "prompt": prompts[i]} for i in done])
    with open(part, "a") as stream:
        stream.write('{"index": 1000002, "pred')  # the crash cut this line
    for i in done:  # asking the model again for these would fail the run
        model.answers.pop(prompts[i])
    result = run_mmbench(model, processor, data, str(tmp_path), batch_size=8)
    assert sum(c["batch"] for c in processor.calls) == len(data) - len(done)
    assert result["circular"]["overall"] == 50.0 and result["n_rows"] == 13
    assert not part.exists()


def test_resume_refuses_predictions_from_another_prompt_or_tsv(dev_tsv, tmp_path):
    data = load_mmbench_tsv(dev_tsv)
    model, processor = fake_model_answering(data, HANDMADE_PREDICTIONS)
    write_jsonl(str(tmp_path / "predictions.jsonl"), [{"index": 1, "prediction": "B", "prompt": "other"}])
    with pytest.raises(ValueError, match="row 1 was predicted with a different prompt"):
        run_mmbench(model, processor, data, str(tmp_path))
    write_jsonl(str(tmp_path / "predictions.jsonl"), [{"index": 77, "prediction": "B"}])
    with pytest.raises(ValueError, match="index 77 is not in"):
        run_mmbench(model, processor, data, str(tmp_path))


def test_resume_refuses_other_settings(dev_tsv, tmp_path):
    data = load_mmbench_tsv(dev_tsv)
    model, processor = fake_model_answering(data, HANDMADE_PREDICTIONS)
    run_mmbench(model, processor, data, str(tmp_path), settings={"model": "a", "max_new_tokens": 100})
    with pytest.raises(ValueError, match="max_new_tokens: 100 -> 5"):
        run_mmbench(model, processor, data, str(tmp_path), settings={"model": "a", "max_new_tokens": 5})


def test_test_split_gives_submission_only(test_tsv, tmp_path, capsys):
    data = load_mmbench_tsv(test_tsv)
    model, processor = fake_model_answering(data, HANDMADE_PREDICTIONS)
    assert run_mmbench(model, processor, data, str(tmp_path)) is None
    assert (tmp_path / "mmbench_result.xlsx").exists() and not (tmp_path / "mmbench_result.json").exists()
    assert "submit" in capsys.readouterr().out


def _sharded_worker(rank: int, port: int, tsv: str, work_dir: str):
    """One of two gloo processes, forked from the test (no re-import), with the environment torchrun or
    `accelerate launch` would set."""
    from accelerate import PartialState

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    PartialState._reset_state()  # forget the single-process state inherited from the test process
    state = process_state()
    assert state.num_processes == 2 and state.process_index == rank
    data = load_mmbench_tsv(tsv)
    model, processor = fake_model_answering(data, HANDMADE_PREDICTIONS)
    run_mmbench(model, processor, data, work_dir, batch_size=2, state=state)


def test_two_processes_give_the_same_result_as_one(dev_tsv, tmp_path):
    data = load_mmbench_tsv(dev_tsv)
    model, processor = fake_model_answering(data, HANDMADE_PREDICTIONS)
    run_mmbench(model, processor, data, str(tmp_path / "one"), batch_size=2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_sharded_worker, args=(rank, port, dev_tsv, str(tmp_path / "two")))
               for rank in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    for name in ("mmbench_result.json", "predictions.jsonl"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()


def test_left_padded_batches_answer_like_single_rows(dev_tsv, tiny_llava_dir):
    """The real tiny model: batching with left padding must not change greedy answers."""
    from llava_hf.inference import load_model_and_processor
    from llava_hf.eval.mmbench_data import decode_image

    data = load_mmbench_tsv(dev_tsv)
    model, processor = load_model_and_processor(tiny_llava_dir)
    processor.tokenizer.padding_side = "left"
    positions = [0, 4, 9]  # different prompt lengths, EN and CN
    prompts = [chat_prompts(data, processor)[p] for p in positions]
    images = [decode_image(data.frame["image"].iat[p]) for p in positions]
    batched = generate_batch(model, processor, prompts, images, max_new_tokens=4)
    single = [generate_batch(model, processor, [t], [i], max_new_tokens=4)[0] for t, i in zip(prompts, images)]
    assert batched == single
    assert prompts[0].startswith(processor.tokenizer.bos_token + "<|im_start|>user\n<image>\n")


def test_named_template_uses_its_instruction_and_stop_words(dev_tsv):
    from llava_hf.data.templates import get_template
    from llava_hf.inference.chat_session import cut_at_stop_words

    data = load_mmbench_tsv(dev_tsv)
    template = get_template("internlm2_chat")
    prompt = chat_prompts(data, None, template)[4]
    assert prompt == ("<|im_start|>user\n<image>\nWhich word is written?\nA. cat\nB. dog\nC. sun\n"
                      "Answer with the option's letter from the given choices directly.<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert cut_at_stop_words("B<|im_end|>\nmore", template.stop_words) == "B"


def test_generation_stops_at_eos_and_im_end(tiny_tokenizer):
    from llava_hf.models.llava_internlm2.processing_llava_internlm2 import chat_stop_token_ids

    assert chat_stop_token_ids(tiny_tokenizer) == [tiny_tokenizer.eos_token_id,
                                              tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")]
