"""LLaVA-format `conversations` -> (input, output) turns, with the checks every sample must pass.

Same turns as XTuner's `llava_map_fn`: a sample's one image is moved to the start of the first user turn
(`"<image>\\n" + text`), leading `gpt` turns are stripped and a trailing `human` turn without a reply is
dropped (ShareGPT conversations in the LLaVA-1.5 mix open with the assistant or end with a question; LLaVA
and FastChat drop those turns too). Both are reported as warnings by the callers. Where XTuner silently
merges or drops more (two user turns in a row, no complete turn left), we raise: such samples are broken data.

Several images (LLaVA-OneVision's interleaved form, `"image": ["a.jpg", "b.jpg"]`) have one `<image>` each, anywhere
in the user turns, in the order of the list; their placeholders stay where the data puts them, so the text around
each image ("Image 1: <image> ...") is kept as written.
"""

from dataclasses import dataclass

IMAGE_TOKEN = "<image>"
USER_ROLE, ASSISTANT_ROLE = "human", "gpt"
LEADING_GPT_STRIPPED = "leading_gpt_turn_stripped"
TRAILING_HUMAN_DROPPED = "trailing_human_turn_dropped"


@dataclass(frozen=True)
class Turn:
    input: str
    output: str


@dataclass(frozen=True)
class Trimmed:
    """Where the trainable part of a conversation starts and ends: `conversations[start:end]`."""

    start: int  # number of leading `gpt` turns stripped
    end: int  # len(conversations) - 1 when a trailing `human` turn is dropped

    @property
    def n_turns(self) -> int:
        return (self.end - self.start) // 2

    def warnings(self, conversations) -> list[tuple[str, str]]:
        """`(kind, message)` for each part left out, for `llava-hf validate-data` and the data summary."""
        found = []
        if self.start:
            found.append((LEADING_GPT_STRIPPED, f"stripped {self.start} leading 'gpt' turn(s) before the first "
                                                "'human' turn (as LLaVA and XTuner do)"))
        if self.end < len(conversations):
            found.append((TRAILING_HUMAN_DROPPED, "dropped the last 'human' turn, which has no 'gpt' reply "
                                                  "(as LLaVA and XTuner do)"))
        return found


def check_conversations(conversations, has_image: bool | int) -> Trimmed:
    """Raise ValueError describing the first problem: shape, role order, and the image rules.

    `has_image` is the sample's number of images (a bool: none or one). One image follows LLaVA-1.5 and XTuner: its
    `<image>` is in the first user turn. Several need exactly one `<image>` each, in user turns.
    Returns what training keeps; the turns it leaves out (leading `gpt`, a trailing `human`) are not errors.
    The order and image rules apply to the kept turns; indices in messages are those of the sample.
    """
    n_images = int(has_image)
    if not isinstance(conversations, list) or not conversations:
        raise ValueError(f"'conversations' must be a non-empty list, got {_short(conversations)}")
    for i, message in enumerate(conversations):
        if not isinstance(message, dict) or not isinstance(message.get("value"), str):
            raise ValueError(f"conversations[{i}] must be an object with a string 'value', got {_short(message)}")
        if message.get("from") not in (USER_ROLE, ASSISTANT_ROLE):
            raise ValueError(f"conversations[{i}] has role {message.get('from')!r}; expected 'human' or 'gpt'")
    start = 0
    while start < len(conversations) and conversations[start]["from"] == ASSISTANT_ROLE:
        start += 1
    for i in range(start, len(conversations)):
        role = conversations[i]["from"]
        if role != (USER_ROLE if (i - start) % 2 == 0 else ASSISTANT_ROLE):
            raise ValueError(f"conversation has two {role!r} turns in a row at index {i}; turns must alternate "
                             "human, gpt, human, gpt, ...")
    end = start + (len(conversations) - start) // 2 * 2
    if end == start:
        raise ValueError("conversation has no complete turn (a 'human' turn followed by a 'gpt' reply)")
    counts = [m["value"].count(IMAGE_TOKEN) for m in conversations[start:end]]
    total = sum(counts)
    if n_images == 0:
        if total:
            raise ValueError("conversation contains '<image>' but the sample has no 'image'")
    elif n_images == 1:
        if total > 1:
            raise ValueError(f"conversation has {total} '<image>' tokens but the sample has 1 image; "
                             "'image' lists one path per '<image>', in order")
        if counts[0] != 1:
            raise ValueError("sample has an image but '<image>' is missing from the first human turn")
    else:
        in_reply = next((start + i for i in range(1, len(counts), 2) if counts[i]), None)
        if in_reply is not None:
            raise ValueError(f"conversations[{in_reply}] is a 'gpt' turn with '<image>'; images go in 'human' turns")
        if total != n_images:
            left_out = sum(m["value"].count(IMAGE_TOKEN) for m in conversations[:start] + conversations[end:])
            where = f" ({left_out} more in the turns training leaves out)" if left_out else ""
            raise ValueError(f"conversation has {total} '<image>' tokens{where} but the sample has {n_images} images; "
                             "'image' lists one path per '<image>', in order")
    return Trimmed(start, end)


def conversation_to_turns(conversations, has_image: bool | int) -> list[Turn]:
    """Checked conversation -> turns; a single image's `<image>` moves to the front of the first user turn (as in
    XTuner), several stay in place. `has_image`: the number of images, as in `check_conversations`."""
    kept = check_conversations(conversations, has_image)
    conversations = conversations[kept.start:kept.end]
    one_image = int(has_image) == 1
    turns = []
    for question, answer in zip(conversations[0::2], conversations[1::2]):
        text = question["value"]
        if one_image and IMAGE_TOKEN in text:
            text = (IMAGE_TOKEN + "\n" + text.replace(IMAGE_TOKEN, "").strip()).strip()
        turns.append(Turn(input=text, output=answer["value"]))
    return turns


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
