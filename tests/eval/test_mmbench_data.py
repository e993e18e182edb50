import pytest
from PIL import Image

from llava_hf.eval.mmbench_data import (
    CN_INSTRUCTION,
    EN_INSTRUCTION,
    build_prompt,
    circular_rows,
    decode_image,
    encode_image,
    load_mmbench_tsv,
)
from tests.eval.mmbench_fixtures import question_frame, write_tsv


def test_load_resolves_references_and_detects_dev(dev_tsv):
    data = load_mmbench_tsv(dev_tsv)
    assert len(data) == 4 + 3 + 2 + 4  # one row per option
    assert data.has_answer and data.option_letters == ["A", "B", "C", "D"]
    frame = data.frame.set_index("index")
    assert frame.loc[1000002, "image"] == frame.loc[2, "image"]  # "2" became the base64 of row 2
    assert decode_image(frame.loc[2000004, "image"]).size == (12, 6)
    assert data.options(7) == {"A": "a singer", "B": "a painter"}  # NaN options dropped, letters kept


def test_test_split_has_no_answer(test_tsv):
    assert not load_mmbench_tsv(test_tsv).has_answer


def test_prompts_match_llava_and_xtuner(dev_tsv):
    data = load_mmbench_tsv(dev_tsv)
    rows = data.frame.set_index("index", drop=False)
    assert build_prompt(rows.loc[1]) == (
        "<image>\nA picture of a park.\nWhat is the main colour?\nA. red\nB. green\nC. blue\nD. yellow\n"
        + EN_INSTRUCTION)
    assert build_prompt(rows.loc[1000001]).startswith("<image>\nA picture of a park.\nWhat is the main colour?\nA. green\n")
    assert build_prompt(rows.loc[2]) == "<image>\nWhich word is written?\nA. cat\nB. dog\nC. sun\n" + EN_INSTRUCTION
    assert build_prompt(rows.loc[3]) == "<image>\nWho is shown?\nA. a singer\nB. a painter\n" + EN_INSTRUCTION
    assert build_prompt(rows.loc[4]) == "<image>\n图中是什么季节？\nA. 春天\nB. 夏天\nC. 秋天\nD. 冬天\n" + CN_INSTRUCTION
    assert build_prompt(rows.loc[2], lang="cn").endswith("\n" + CN_INSTRUCTION)
    assert build_prompt(rows.loc[4], lang="en").endswith("\n" + EN_INSTRUCTION)


def test_option_text_na_and_none_stay_options(tmp_path):
    frame = question_frame()
    frame.loc[0, ["C", "D"]] = ["NA", "None"]
    data = load_mmbench_tsv(write_tsv(tmp_path / "x.tsv", frame))
    assert data.options(0) == {"A": "red", "B": "green", "C": "NA", "D": "None"}


def test_column_name_variants_and_ccbench_layout(tmp_path):
    frame = question_frame().drop(columns=["hint", "split"]).rename(columns={"l2-category": "L2_category"})
    data = load_mmbench_tsv(write_tsv(tmp_path / "CCBench.tsv", circular_rows(frame)))
    assert "l2-category" in data.frame.columns
    ccbench = load_mmbench_tsv(write_tsv(tmp_path / "cc.tsv", frame.drop(columns=["L2_category"])))
    assert build_prompt(ccbench.frame.iloc[0]).startswith("<image>\nWhat is the main colour?\nA. red")


def test_reference_chains_are_followed(tmp_path):
    frame = circular_rows(question_frame())
    frame.loc[frame["index"] == 2000001, "image"] = "1000001"  # -> "1" -> base64
    data = load_mmbench_tsv(write_tsv(tmp_path / "x.tsv", frame))
    rows = data.frame.set_index("index")
    assert rows.loc[2000001, "image"] == rows.loc[1, "image"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns=["question"]), "missing column"),
        (lambda f: f.assign(image=["999"] + list(f["image"][1:])), "index 999, which is not in the file"),
        (lambda f: f.assign(answer=["E"] + list(f["answer"][1:])), "row with index 1: answer 'E'"),
        (lambda f: f.assign(index=[1] + list(f["index"][1:-1]) + [1]), "duplicate index"),
        (lambda f: f.assign(B=f["B"].where(f["index"] != 3)), "row with index 3 has 1 option"),
        (lambda f: f[f["index"] != 2], "no pass-0 row"),
        (lambda f: f.assign(index=["x"] + list(f["index"][1:])), "non-integer"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, change, message):
    path = write_tsv(tmp_path / "bad.tsv", change(circular_rows(question_frame())))
    with pytest.raises(ValueError, match=message) as error:
        load_mmbench_tsv(path)
    assert "bad.tsv" in str(error.value)


def test_bad_base64_names_the_row():
    with pytest.raises(ValueError, match="row 7"):
        decode_image("bm90IGFuIGltYWdl" * 5, where="row 7")


def test_circular_rows_rotate_left_like_vlmevalkit():
    frame = circular_rows(question_frame()[:1])
    assert frame["index"].tolist() == [1, 1000001, 2000001, 3000001]
    assert frame["A"].tolist() == ["red", "green", "blue", "yellow"]
    assert frame["answer"].tolist() == ["B", "A", "D", "C"]  # "green" follows its option
    assert frame["image"].tolist()[1:] == ["1", "1", "1"]


def test_image_roundtrip_is_rgb():
    assert decode_image(encode_image(Image.new("L", (3, 2)), "PNG")).mode == "RGB"
