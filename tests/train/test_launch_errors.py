"""A user mistake under `accelerate launch` (the README's way to train) prints our one `error:` line and no
traceback. examples/train.py exits with status 2; accelerate's launcher turns any failing child into status 1:
without `-q` it adds a `CalledProcessError` traceback, and without a config file or explicit values (--num_processes,
--num_machines, --mixed_precision, --dynamo_backend) a defaults warning before the child starts. With `-q` and those
values the launch prints our line alone."""

import os
import subprocess
import sys

import pytest

from tests.train.conftest import common_args, write_data

TRAIN = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "train.py")
QUIET_LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "-q", "--num_processes", "1", "--num_machines",
                "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


@pytest.fixture(scope="module")
def data_with_a_missing_image(tmp_path_factory):
    data_path, images = write_data(tmp_path_factory.mktemp("missing_image"), n_image=3, n_text=0)
    os.remove(os.path.join(images, "1.png"))
    return data_path, images


CASES = ("bad flag value", "missing model path", "missing image")


@pytest.fixture(scope="module")
def launched(micro_base, image_data, data_with_a_missing_image, tmp_path_factory):
    """{case: (expected line, the accelerate launch, the script run directly)}: every launch started at once (each
    is mostly two Python start-ups), then waited for."""
    runs = {}
    for case in CASES:
        flags, data, expected = {
            "bad flag value": (dict(stage="finetun"), image_data,
                               "train.py: error: argument --stage: invalid choice: 'finetun' (choose from "
                               "'pretrain', 'finetune')"),
            "missing model path": (dict(stage="finetune", model_name_or_path="work_dirs/stage1"), image_data,
                                   "train.py: error: --model_name_or_path work_dirs/stage1: no such folder"),
            "missing image": (dict(llm_name_or_path=f"{micro_base}/llm",
                                   vision_tower_name_or_path=f"{micro_base}/clip"), data_with_a_missing_image,
                              "train.py: error: data validation failed before step 1 (see the report above)"),
        }[case]
        cwd = tmp_path_factory.mktemp("launch")
        (cwd / "work_dirs").mkdir()
        argv = [TRAIN, *common_args(cwd / "work_dirs" / "out", data, **flags)]
        direct = start([sys.executable, *argv], cwd) if case == "bad flag value" else None
        runs[case] = (expected, start(QUIET_LAUNCH + argv, cwd), direct)
    return {case: (expected, finish(launch), direct and finish(direct))
            for case, (expected, launch, direct) in runs.items()}


def start(cmd, cwd):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)


def finish(process):
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_user_mistake_under_accelerate_launch_is_one_error_line(launched, case):
    expected, (code, stdout, stderr), direct = launched[case]
    output = stdout + stderr
    assert code == 1, output[-3000:]  # accelerate's status for any failing child
    assert [line for line in output.splitlines() if "error:" in line] == [expected], output[-3000:]
    assert "Traceback" not in output and "defaults used instead" not in output
    if case == "missing image":  # the validator's report names the sample and the file
        assert "sample #1 (id 'img1'): image '1.png' not found" in stdout
    else:
        assert stderr.splitlines() == [expected]
    if direct is not None:  # the script alone: the same line, and status 2
        assert (direct[0], direct[2].splitlines()) == (2, [expected])
