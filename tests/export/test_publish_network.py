"""`llava-hf publish` without a network: one `error:` line naming the repository, never a traceback. Nothing
leaves this machine: the Hub is a closed local port, or offline mode is on."""

import pytest
from huggingface_hub import constants

from llava_hf.cli.main import main as cli
from llava_hf.errors import UserInputError
from llava_hf.export.publish import upload_folder
from tests.unreachable import unreachable_url


def test_upload_to_an_unreachable_hub_is_one_line_naming_the_repo(tmp_path, monkeypatch):
    # A refused connection is huggingface_hub's HTTP library's error (httpx2.ConnectError on 2.x), not an OSError.
    monkeypatch.setattr(constants, "ENDPOINT", unreachable_url())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    (tmp_path / "README.md").write_text("card")
    with pytest.raises(UserInputError) as error:
        upload_folder(str(tmp_path), "me/tiny-llava")
    message = str(error.value)
    assert message.startswith("cannot upload to me/tiny-llava: ") and "\n" not in message


def test_publish_in_offline_mode_is_one_line_naming_the_repo(trained, capsys, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=1
    assert cli(["publish", str(trained / "stage1"), "--repo-id", "me/tiny-llava", "--torch-dtype", "float32"]) == 2
    err = capsys.readouterr().err  # the progress bars of the model load, then the error
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("llava-hf publish: error: cannot upload to me/tiny-llava: ")
    assert "offline mode is enabled" in last
