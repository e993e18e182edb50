import pytest

from llava_hf.data.conversation import (
    LEADING_GPT_STRIPPED, TRAILING_HUMAN_DROPPED, Trimmed, Turn, check_conversations, conversation_to_turns,
)


def h(value):
    return {"from": "human", "value": value}


def g(value):
    return {"from": "gpt", "value": value}


def test_image_moves_to_the_start_of_the_first_user_turn():
    turns = conversation_to_turns([h("Describe it.\n<image>"), g("A cat."), h("Colour?"), g("Black.")], has_image=True)
    assert turns == [Turn("<image>\nDescribe it.", "A cat."), Turn("Colour?", "Black.")]


def test_image_only_user_turn_keeps_just_the_token():
    assert conversation_to_turns([h("<image>"), g("A cat.")], has_image=True)[0].input == "<image>"


@pytest.mark.parametrize("conversations, has_image, message", [
    ([g("Hi"), h("<image>\nQ")], True, "no complete turn"),
    ([g("Hi"), g("Hello")], False, "no complete turn"),
    ([h("Q")], False, "no complete turn"),
    ([h("<image>\nQ"), g("A"), g("B")], True, "two 'gpt' turns in a row at index 2"),
    ([g("Hi"), h("<image>\nQ"), g("A"), g("B")], True, "two 'gpt' turns in a row at index 3"),
    ([h("<image>\nQ"), h("Q2"), g("A")], True, "two 'human' turns in a row at index 1"),
    ([g("<image>"), h("Q"), g("A")], True, "missing from the first human turn"),  # the image went with the gpt turn
    ([h("<image>\nQ <image>"), g("A")], True, "2 '<image>' tokens"),
    ([h("Q"), g("A"), h("<image>"), g("B")], True, "missing from the first human turn"),
    ([h("Q"), g("A")], True, "missing from the first human turn"),
    ([h("<image>\nQ"), g("A")], False, "contains '<image>' but the sample has no 'image'"),
    ([{"from": "user", "value": "Q"}, g("A")], False, "role 'user'"),
    ([h("Q"), {"from": "gpt"}], False, r"conversations\[1\] must be an object with a string 'value'"),
    ([], False, "non-empty list"),
    ("hello", False, "non-empty list"),
])
def test_bad_conversations_are_named(conversations, has_image, message):
    with pytest.raises(ValueError, match=message):
        check_conversations(conversations, has_image)


def test_leading_gpt_turns_and_a_trailing_human_turn_are_left_out_like_xtuner():
    clean = [h("Describe it.\n<image>"), g("A cat."), h("Colour?"), g("Black.")]
    messy = [g("Hello! How can I help?"), g("Ask me anything."), *clean, h("And the dog?")]
    kept = check_conversations(messy, has_image=True)
    assert kept == Trimmed(start=2, end=6) and kept.n_turns == 2
    assert [kind for kind, _ in kept.warnings(messy)] == [LEADING_GPT_STRIPPED, TRAILING_HUMAN_DROPPED]
    assert "stripped 2 leading 'gpt' turn(s)" in kept.warnings(messy)[0][1]
    assert conversation_to_turns(messy, has_image=True) == conversation_to_turns(clean, has_image=True)
    assert check_conversations(clean, has_image=True).warnings(clean) == []
    assert conversation_to_turns([h("Q"), g("A"), h("<image>")], has_image=False) == [Turn("Q", "A")]


def test_several_images_keep_their_placeholders_where_the_data_puts_them():
    conversations = [h("Image 1: <image>\nImage 2: <image>\nWhich is bigger?"), g("The first."),
                     h("And this one?\n<image>"), g("Smaller.")]
    assert conversation_to_turns(conversations, has_image=3) == [
        Turn("Image 1: <image>\nImage 2: <image>\nWhich is bigger?", "The first."),
        Turn("And this one?\n<image>", "Smaller."),
    ]
    # one image keeps LLaVA-1.5's rule: first user turn, moved to the front
    assert conversation_to_turns([h("Q <image>"), g("A")], has_image=1) == [Turn("<image>\nQ", "A")]


@pytest.mark.parametrize("conversations, n_images, message", [
    ([h("<image>\n<image>\n<image>\nQ"), g("A")], 2, "3 '<image>' tokens but the sample has 2 images"),  # more
    ([h("<image>\nQ"), g("A"), h("<image>"), g("B")], 3, "2 '<image>' tokens but the sample has 3 images"),  # fewer
    ([h("<image>\nQ"), g("A")], 2, "1 '<image>' tokens but the sample has 2 images"),
    ([h("<image>\nQ"), g("A"), h("Q2"), g("B")], 1, None),
    ([h("<image>\nQ"), g("A <image>"), h("<image>"), g("B")], 3, r"conversations\[1\] is a 'gpt' turn with '<image>'"),
    ([h("<image>\n<image>\nQ"), g("A")], 1, "2 '<image>' tokens but the sample has 1 image;"),
    # a placeholder in a turn that training leaves out does not count
    ([h("<image>\nQ"), g("A"), h("<image>")], 2,
     r"1 '<image>' tokens \(1 more in the turns training leaves out\) but the sample has 2 images"),
])
def test_image_and_placeholder_counts_must_agree(conversations, n_images, message):
    if message is None:
        check_conversations(conversations, n_images)
        return
    with pytest.raises(ValueError, match=message):
        check_conversations(conversations, n_images)
