"""LLaVA-format `conversations` -> (input, output) turns, with the checks every sample must pass.

Same turns as XTuner's `llava_map_fn`: the image is moved to the start of the first user turn
(`"<image>\\n" + text`). Where XTuner silently drops or merges (a leading `gpt` turn, two user turns in a
row, a trailing question without reply), we raise: such samples are almost always broken data.
"""

from dataclasses import dataclass

IMAGE_TOKEN = "<image>"
USER_ROLE, ASSISTANT_ROLE = "human", "gpt"


@dataclass(frozen=True)
class Turn:
    input: str
    output: str


def check_conversations(conversations, has_image: bool) -> None:
    """Raise ValueError describing the first problem: shape, role order, and the one-image rules."""
    if not isinstance(conversations, list) or not conversations:
        raise ValueError(f"'conversations' must be a non-empty list, got {_short(conversations)}")
    for i, message in enumerate(conversations):
        if not isinstance(message, dict) or not isinstance(message.get("value"), str):
            raise ValueError(f"conversations[{i}] must be an object with a string 'value', got {_short(message)}")
        role = message.get("from")
        expected = USER_ROLE if i % 2 == 0 else ASSISTANT_ROLE
        if role not in (USER_ROLE, ASSISTANT_ROLE):
            raise ValueError(f"conversations[{i}] has role {role!r}; expected 'human' or 'gpt'")
        if role != expected:
            what = "starts with a 'gpt' turn" if i == 0 else f"has two {role!r} turns in a row at index {i}"
            raise ValueError(f"conversation {what}; turns must alternate human, gpt, human, gpt, ...")
    if len(conversations) % 2:
        raise ValueError("conversation ends with a 'human' turn that has no 'gpt' reply")
    counts = [m["value"].count(IMAGE_TOKEN) for m in conversations]
    total = sum(counts)
    if has_image:
        if total > 1:
            raise ValueError(f"conversation has {total} '<image>' tokens; exactly one is supported per sample")
        if counts[0] != 1:
            raise ValueError("sample has an image but '<image>' is missing from the first human turn")
    elif total:
        raise ValueError("conversation contains '<image>' but the sample has no 'image'")


def conversation_to_turns(conversations, has_image: bool) -> list[Turn]:
    """Checked conversation -> turns, with `<image>` moved to the front of the first user turn."""
    check_conversations(conversations, has_image)
    turns = []
    for question, answer in zip(conversations[0::2], conversations[1::2]):
        text = question["value"]
        if IMAGE_TOKEN in text:
            text = (IMAGE_TOKEN + "\n" + text.replace(IMAGE_TOKEN, "").strip()).strip()
        turns.append(Turn(input=text, output=answer["value"]))
    return turns


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
