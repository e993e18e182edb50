"""How a user mistake is reported: our own messages whole, a library's first line only, exit status 2."""

from llava_hf.errors import USAGE_ERROR, report_user_error
from llava_hf.data.errors import DataError


def test_a_data_error_keeps_its_list_of_bad_samples(capsys):
    error = DataError("2 bad samples:\nd.json sample #0 (id 'a'): no reply\nd.json sample #3 (id 'b'): no reply")
    assert report_user_error("train.py", error) == USAGE_ERROR
    assert capsys.readouterr().err == f"train.py: error: {error}\n"


def test_a_library_error_is_cut_to_its_first_line(capsys):
    assert report_user_error("llava-hf chat", OSError("cannot load x\nTraceback-like detail\nmore")) == USAGE_ERROR
    assert capsys.readouterr().err == "llava-hf chat: error: cannot load x\n"
