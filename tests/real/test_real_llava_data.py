"""Real LLaVA-format rows (100 LLaVA-Instruct-150K, 4241 ScienceQA of which 2224 text-only) validate and
tokenize with the real tokenizers; one LLaVA-Instruct row is rendered by hand for `internlm2_chat` and
`vicuna`. The images are not published with the rows: the test writes a small stand-in for each."""

import pytest
from PIL import Image

from llava_hf.data.dataset import build_llava_dataset
from llava_hf.data.sources import DataSource
from llava_hf.data.templates import get_template
from llava_hf.data.tokenization import IGNORE_INDEX, tokenize_conversation
from llava_hf.data.validate import validate_data
from tests.real.conftest import real_path
from tests.real.test_real_templates import supervised_spans


@pytest.fixture(scope="module")
def real_sources(tmp_path_factory, llava_instruct_rows, scienceqa_rows):
    """Both real files as data sources, each with a folder of 8x8 stand-in images under the rows' paths."""
    sources = []
    for name, rows in (("llava_instruct_100.json", llava_instruct_rows),
                       ("scienceqa_llava_test_CQM-A.json", scienceqa_rows)):
        folder = tmp_path_factory.mktemp(name.split("_")[0])
        for relative in {row["image"] for row in rows if "image" in row}:
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (90, 120, 200)).save(folder / relative)
        sources.append(DataSource(str(real_path("llava_data", name)), str(folder)))
    return sources


@pytest.fixture(scope="module")
def internlm2_processor(internlm2_tokenizer):
    from transformers import CLIPImageProcessorPil

    from llava_hf.models.llava_internlm2.processing_llava_internlm2 import LlavaInternLM2Processor

    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    return LlavaInternLM2Processor(image_processor, internlm2_tokenizer, image_seq_length=4)


def test_real_rows_validate(real_sources, internlm2_tokenizer):
    report = validate_data(real_sources, tokenizer=internlm2_tokenizer, template="internlm2_chat", num_workers=2)
    assert report.ok and not report.warnings, report.format()
    assert (report.counts["samples"], report.counts["with_image"], report.counts["text_only"]) == (4341, 2117, 2224)


def test_real_rows_tokenize_with_loss_on_exactly_the_replies(real_sources, internlm2_processor, internlm2_tokenizer,
                                                             llava_instruct_rows, scienceqa_rows):
    dataset = build_llava_dataset(real_sources, internlm2_processor, template="internlm2_chat", num_proc=1)
    assert (len(dataset), dataset.stats["bad"], dataset.stats["no_supervised_tokens"]) == (4341, 0, 0)
    assert (dataset.stats["with_image"], dataset.stats["text_only"]) == (2117, 2224)
    table = dataset.table  # the compact encoding: one image token per image
    for row, ids, labels in zip(llava_instruct_rows + scienceqa_rows, table["input_ids"], table["labels"]):
        spans = supervised_spans(internlm2_tokenizer, ids, labels)
        assert spans == [m["value"] + "<|im_end|>" for m in row["conversations"][1::2]], row["id"]
        assert ids.count(internlm2_processor.image_token_id) == ("image" in row)
    assert (dataset[0]["input_ids"] == internlm2_processor.image_token_id).sum() == 4


def test_real_row_renders_with_internlm2_chat(internlm2_tokenizer, llava_instruct_rows):
    row = llava_instruct_rows[0]["conversations"]
    assert row[0]["value"].endswith("\n<image>")  # LCS-558K style: moved to the front, as XTuner does
    question = row[0]["value"].removesuffix("\n<image>")
    expected = f"<s><|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n{row[1]['value']}<|im_end|>\n"
    for q, a in zip(row[2::2], row[3::2]):
        expected += f"<|im_start|>user\n{q['value']}<|im_end|>\n<|im_start|>assistant\n{a['value']}<|im_end|>\n"
    ids, labels = tokenize_conversation(row, internlm2_tokenizer, get_template("internlm2_chat"), has_image=True,
                                        image_token_id=internlm2_tokenizer.convert_tokens_to_ids("<image>"))
    assert internlm2_tokenizer.decode(ids) == expected
    assert supervised_spans(internlm2_tokenizer, ids, labels) == [a["value"] + "<|im_end|>" for a in row[1::2]]
    assert ids.count(internlm2_tokenizer.bos_token_id) == 1 and ids.count(92543) == 2 * len(row) // 2


def test_real_row_renders_with_vicuna_and_llama2(llama2_tokenizer, llama2_sp, llava_instruct_rows):
    """XTuner's encode_fn with Llama-2: every chunk is SentencePiece-encoded on its own (so each gets the dummy
    prefix), BOS opens every turn, EOS ends every reply with loss, the "\\n" sep has none."""
    row = llava_instruct_rows[0]["conversations"]
    image_token_id = llama2_tokenizer.convert_tokens_to_ids("<image>")
    bos, eos = llama2_sp.bos_id(), llama2_sp.eos_id()
    questions = ["<image>\n" + row[0]["value"].removesuffix("\n<image>")] + [q["value"] for q in row[2::2]]
    answers = [a["value"] for a in row[1::2]]
    expected_ids, expected_labels = [], []
    for question, answer in zip(questions, answers):
        before, _, after = f"USER: {question} ASSISTANT:".rpartition("<image>")
        prompt = [bos] + (llama2_sp.encode(before) + [image_token_id] if before else []) + llama2_sp.encode(after)
        reply, sep = llama2_sp.encode(answer) + [eos], llama2_sp.encode("\n")
        expected_ids += prompt + reply + sep
        expected_labels += [IGNORE_INDEX] * len(prompt) + reply + [IGNORE_INDEX] * len(sep)
    ids, labels = tokenize_conversation(row, llama2_tokenizer, get_template("vicuna"), has_image=True,
                                        image_token_id=image_token_id)
    assert (ids, labels) == (expected_ids, expected_labels)
    assert supervised_spans(llama2_tokenizer, ids, labels) == [a + "</s>" for a in answers]
    text = llama2_tokenizer.decode(ids)
    assert text.startswith(f"<s> USER: <image> \n{questions[0][len('<image>') + 1:]} ASSISTANT: {answers[0]}</s> \n<s>")
