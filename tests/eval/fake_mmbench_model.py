"""A stand-in model + processor for runner tests: each prompt is one token and the "model" answers it from a
table, so sharding, batching, merging and resume can be checked against hand-computed scores in milliseconds."""

import torch
from transformers.feature_extraction_utils import BatchFeature


class FakeTokenizer:
    bos_token, eos_token_id, pad_token_id = "<s>", 1, 0
    padding_side = "right"

    def __init__(self):
        self.texts = ["<pad>", "</s>"]

    def token_for(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text)

    def get_vocab(self):
        return {text: i for i, text in enumerate(self.texts)}

    def convert_tokens_to_ids(self, token):
        return self.get_vocab().get(token)

    def batch_decode(self, ids, skip_special_tokens=True):
        return ["".join(self.texts[i] for i in row.tolist() if i > 1) for row in ids]


class FakeProcessor:
    def __init__(self):
        self.tokenizer = FakeTokenizer()
        self.calls = []

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        return f"<s>USER: {messages[0]['content']} ASSISTANT:"

    def __call__(self, images=None, text=None, padding=True, return_tensors="pt", pad_to_square=None,
                 add_special_tokens=True):
        assert len(images) == len(text) and all(image.mode == "RGB" for image in images)
        self.calls.append({"batch": len(text), "add_special_tokens": add_special_tokens,
                           "pad_to_square": pad_to_square})
        ids = torch.tensor([[self.tokenizer.token_for(t)] for t in text])
        return BatchFeature({"input_ids": ids, "attention_mask": torch.ones_like(ids)})


class FakeModel:
    """Answers each prompt from `answers` (prompt text -> reply); a missing prompt is a test bug."""

    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self, processor: FakeProcessor, answers: dict[str, str]):
        self.tokenizer, self.answers = processor.tokenizer, answers

    def generate(self, input_ids, attention_mask, max_new_tokens, do_sample, **kwargs):
        assert do_sample is False
        replies = [self.answers[self.tokenizer.texts[int(row[-1])]] for row in input_ids]
        new = torch.tensor([[self.tokenizer.token_for(reply)] for reply in replies])
        return torch.cat([input_ids, new], dim=1)


def fake_model_answering(data, predictions_by_index: dict[int, str]):
    """(model, processor) that reply `predictions_by_index[index]` to the prompt of each TSV row."""
    from llava_hf.eval.mmbench_runner import chat_prompts

    processor = FakeProcessor()
    prompts = chat_prompts(data, processor)
    answers = {p: predictions_by_index[i] for i, p in zip(data.frame["index"].tolist(), prompts)}
    return FakeModel(processor, answers), processor
