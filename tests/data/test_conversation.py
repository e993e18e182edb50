import pytest

from llava_hf.data.conversation import Turn, check_conversations, conversation_to_turns


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
    ([g("Hi"), h("<image>\nQ")], True, "starts with a 'gpt' turn"),
    ([h("<image>\nQ"), g("A"), g("B")], True, "two 'gpt' turns in a row at index 2"),
    ([h("<image>\nQ"), g("A"), h("Q2")], True, "no 'gpt' reply"),
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
