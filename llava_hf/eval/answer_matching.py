"""Map a free-text prediction to an option letter, as VLMEvalKit's offline matcher (`can_infer`) does.

Pinned variant: the classic (pre-August-2025) `vlmeval/utils/matching_util.py`, i.e. before
VLMEvalKit #1175 added the "letter among the last 4 tokens" rule and the length guard on text matching,
and before #1552 added the "answer is X" regex. The published MMBench numbers (LLaVA, XTuner tables) were
produced with this variant, so it is the closest local stand-in for the leaderboard. As in VLMEvalKit's
default configuration (env `VERBOSE` unset) the "A might be a quantifier" guard is off: "A cat." -> "A".

There is no LLM judge: a row that neither rule parses is unparsable and counts as wrong
(VLMEvalKit's `exact_matching` policy).
"""

from __future__ import annotations

MATCHER_NAME = "vlmevalkit-can_infer-classic(pre-2025-08, exact_matching)"
REFUSAL = "Z"  # VLMEvalKit's "none of the options" letter; never equals a ground truth
REFUSAL_PHRASES = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
API_FAILURE = "Failed to obtain answer via API"
_STRIPPED_PUNCTUATION = ".()[],:;!*#{}"


def can_infer_option(answer: str, choices: dict[str, str]) -> str | None:
    """The letter if exactly one option letter appears as a whole token (after stripping `.()[],:;!*#{}`)."""
    if API_FAILURE in answer:
        return None
    if any(phrase in answer for phrase in REFUSAL_PHRASES):
        return REFUSAL
    for char in _STRIPPED_PUNCTUATION:
        answer = answer.replace(char, " ")
    tokens = answer.split()
    letters = [letter for letter in choices if letter in tokens]
    if len(letters) == 1:
        return letters[0]
    if not letters and REFUSAL in tokens:
        return REFUSAL
    return None


def can_infer_text(answer: str, choices: dict[str, str]) -> str | None:
    """The letter of the only option whose text occurs (case-insensitively) in the answer."""
    answer = answer.lower()
    candidates = [letter for letter, text in choices.items() if str(text).lower() in answer]
    return candidates[0] if len(candidates) == 1 else None


def can_infer(answer, choices: dict[str, str]) -> str | None:
    """Option letter, `"Z"` for a refusal, or None when the prediction cannot be parsed."""
    answer = "" if answer is None else str(answer)
    return can_infer_option(answer, choices) or can_infer_text(answer, choices)
