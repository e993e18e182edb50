"""ChatSession: cached multi-turn answers equal full-history answers; only new tokens are encoded."""

from PIL import Image

from llava_hf.data.templates import get_template
from llava_hf.inference.chat_session import (
    ChatSession,
    ChatTurn,
    end_of_turn_marker,
    hold_back_stop_words,
    render_with_template,
)

GREEDY = {"max_new_tokens": 10, "do_sample": False}
RED, BLUE = Image.new("RGB", (40, 30), (220, 20, 20)), Image.new("RGB", (32, 32), (20, 20, 220))


class TokenCounter:
    """Records the sequence length of every forward pass through `module` (what the KV cache saves shows here)."""

    def __init__(self, module):
        self.calls = []
        self.handle = module.register_forward_hook(
            lambda module, args, output: self.calls.append(args[0].shape[-1] if args else None))


def test_three_turns_with_cache_equal_three_full_history_generations(tiny_llava, full_history_answer):
    model, processor = tiny_llava
    session = ChatSession(model, processor, generation_options=GREEDY)
    first = session.reply("what color is it", images=[RED])
    second = session.reply("and the shape")
    session.add_image(BLUE)  # a new image mid-conversation
    third = session.reply("compare the two")

    assert first == full_history_answer(model, processor, [("what color is it", [RED], None)])
    assert second == full_history_answer(model, processor, [("what color is it", [RED], first),
                                                            ("and the shape", [], None)])
    assert third == full_history_answer(model, processor, [("what color is it", [RED], first),
                                                           ("and the shape", [], second),
                                                           ("compare the two", [BLUE], None)])
    assert [len(turn.images) for turn in session.turns] == [1, 0, 1]


def test_later_turns_encode_only_their_new_tokens(tiny_llava):
    model, processor = tiny_llava
    tokenizer = processor.tokenizer
    byte_tokens = [i for i, token in enumerate(tokenizer.convert_ids_to_tokens(range(len(tokenizer))))
                   if token.startswith("<0x")]  # a lone byte decodes to U+FFFD and would not re-encode the same
    one_word = {"max_new_tokens": 1, "do_sample": False, "suppress_tokens": byte_tokens}
    session = ChatSession(model, processor, generation_options=one_word)
    session.reply("what color is it", images=[RED])
    cached = session.cache.get_seq_length()
    text_tokens, image_passes = TokenCounter(model.get_input_embeddings()), TokenCounter(model.vision_tower)
    try:
        session.reply("and the shape")
    finally:
        text_tokens.handle.remove(), image_passes.handle.remove()
    new_turn = tokenizer.encode("<|im_end|>\n<|im_start|>user\nand the shape<|im_end|>\n<|im_start|>assistant\n",
                                add_special_tokens=False)
    # Fed: the first answer's token (the last generated token is never in the cache) and the new turn.
    assert text_tokens.calls == [1 + len(new_turn)]
    assert image_passes.calls == []  # the first turn's image is not encoded again
    assert session.cache.get_seq_length() == cached + 1 + len(new_turn)


def test_reset_forgets_the_conversation(tiny_llava, full_history_answer):
    model, processor = tiny_llava
    session = ChatSession(model, processor, generation_options=GREEDY)
    session.reply("what color is it", images=[RED])
    session.reset()
    answer = session.reply("hello")
    assert len(session.turns) == 1
    assert answer == full_history_answer(model, processor, [("hello", [], None)])


def test_stopping_the_stream_early_still_records_the_turn(tiny_llava):
    model, processor = tiny_llava
    session = ChatSession(model, processor, generation_options={"max_new_tokens": 50, "do_sample": False})
    stream = session.stream_reply("describe it", images=[RED])
    next(stream)
    stream.close()  # Ctrl-C in the terminal, a closed tab in the web demo
    assert session.turns[-1].answer is not None
    assert session.cache.get_seq_length() > 0
    session.reply("go on")  # the conversation continues from the partial answer
    assert len(session.turns) == 2


def test_answers_end_at_the_chat_templates_end_of_turn_token(tiny_llava):
    model, processor = tiny_llava
    assert end_of_turn_marker(processor) == "<|im_end|>"
    session = ChatSession(model, processor, generation_options=GREEDY)
    assert session.stop_token_ids == [processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert session.stop_words == []  # a one-token stop word is an EOS, not a string match


def test_text_stop_words_are_neither_streamed_nor_kept():
    pieces = ["Hello wo", "rld. ST", "OP and more"]
    assert "".join(hold_back_stop_words(iter(pieces), ["STOP"])) == "Hello world. "
    assert "".join(hold_back_stop_words(iter(["a S", "TO", "x"]), ["STOP"])) == "a STOx"  # a false start


def test_xtuner_template_layout_matches_xtuner_chat():
    template = get_template("internlm2_chat")
    turns = [ChatTurn("what is it", [RED], "a dog"), ChatTurn("colour?", [], None)]
    text = render_with_template(template, turns, "Be brief.", "<image>", "</s>")
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                    "<|im_start|>user\n<image>\nwhat is it<|im_end|>\n<|im_start|>assistant\n"
                    "a dog<|im_end|>\n"
                    "<|im_start|>user\ncolour?<|im_end|>\n<|im_start|>assistant\n")


def test_plain_template_keeps_only_the_image_like_stage_one_training():
    turns = [ChatTurn("describe it", [RED], None)]
    assert render_with_template(get_template("plain"), turns, None, "<image>", "</s>") == "<image>"


def test_named_template_session_matches_its_own_full_history(tiny_llava):
    model, processor = tiny_llava
    template = get_template("internlm2_chat")
    session = ChatSession(model, processor, template=template, generation_options=GREEDY)
    first = session.reply("what color is it", images=[RED])
    second = session.reply("and the shape")
    fresh = ChatSession(model, processor, template=template, generation_options=GREEDY)
    fresh.turns = [ChatTurn("what color is it", [RED], first)]  # the same history, no cache
    assert fresh.reply("and the shape") == second


def test_user_stop_words_cut_the_answer_where_they_start(tiny_llava):
    model, processor = tiny_llava
    unstopped = ChatSession(model, processor, generation_options=GREEDY).reply("what color is it", images=[RED])
    word = unstopped[3:5]
    stopped = ChatSession(model, processor, generation_options=GREEDY, stop_words=[word]).reply(
        "what color is it", images=[RED])
    assert stopped == unstopped[: unstopped.index(word)]
