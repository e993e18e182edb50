import pytest

from llava_hf.eval.answer_matching import can_infer

CHOICES = {"A": "a red circle", "B": "a blue square", "C": "a green triangle", "D": "nothing"}


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("**B**", "B"),
        ("Answer: B", "B"),  # XTuner's regex would say "A" (the A of "Answer")
        ("Based on the image, the answer is C", "C"),  # XTuner's regex would say "B"
        ("B. Because the shape has four equal sides and the colour is blue, as one can see.", "B"),  # any position
        ("a blue square", "B"),  # option text alone
        ("It is A GREEN TRIANGLE.", "A"),  # the letter rule comes first: "A" is a standalone token
        ("It is a Green Triangle.", "C"),  # text match ignores case
        ("答案: B", "B"),  # ASCII colon is stripped
        ("答案：B", None),  # full-width colon is not: one token, unparsable under exact matching
        ("答案是B", None),
        ("A cat is sitting on the mat.", "A"),  # the quantifier guard is off in the pinned variant
        ("A or B", None),  # two letters
        ("Cannot determine the answer", "Z"),  # refusal
        ("Z", "Z"),
        ("Failed to obtain answer via API", None),
        ("", None),
        (None, None),
    ],
)
def test_extraction_table(prediction, expected):
    assert can_infer(prediction, dict(CHOICES)) == expected


def test_only_the_row_options_count_as_letters():
    # a 2-option row: "C" is not a choice, so it is no letter and the text match decides
    assert can_infer("C", {"A": "yes", "B": "no"}) is None
    assert can_infer("C. no", {"A": "yes", "B": "no"}) == "B"


def test_text_match_must_be_unique():
    assert can_infer("dark red", {"A": "red", "B": "dark red"}) is None


def test_choices_are_not_mutated():
    choices = dict(CHOICES)
    can_infer("A BLUE SQUARE", choices)
    assert choices == CHOICES
