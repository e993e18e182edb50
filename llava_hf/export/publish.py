"""`llava-hf publish`: upload a trained model to the Hugging Face Hub as a folder that works without llava_hf.

A training output is rarely publishable as it is: an adapter needs its base folder, a stage-1 folder needs the
LLM and vision-encoder folders its config points at, and both record local paths. So the folder is first made
self-contained in a temporary staging folder (`load_merged` + `save_model_folder`: adapters merged, backbones
materialised, model/processor code and `auto_map` included), local paths are dropped from the config, the model
card is written, and only then is the staging folder uploaded with `huggingface_hub` (`create_repo` +
`upload_folder`). A dry run (`publish(..., dry_run=OUT)`) writes the same folder, with the same code, to OUT
instead of a temporary one and uploads nothing: no network, no token.
"""

import os
import tempfile

from huggingface_hub import HfApi
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..errors import UserInputError
from .merge import DEFAULT_MAX_SHARD_SIZE, folder_kind, load_merged, save_model_folder
from .model_card import (
    LICENSE_PLACEHOLDER,
    build_model_card,
    read_mmbench_result,
    save_model_card,
    training_summary,
    write_training_summary,
)
from .output_folder import atomic_output_folder


def publish(folder: str, repo_id: str, private: bool = False, revision: str | None = None, token: str | None = None,
            datasets=(), base_model=(), license: str = LICENSE_PLACEHOLDER, mmbench_result: str | None = None,
            dtype: str = "auto", max_shard_size: str = DEFAULT_MAX_SHARD_SIZE, commit_message: str | None = None,
            dry_run: str | None = None, force: bool = False):
    """Stage `folder` as a self-contained model folder with a model card and upload it to `repo_id`; returns the
    commit info of the upload. With `dry_run`, the folder is written there (an existing, non-empty one is replaced
    only with `force`) and nothing is uploaded; returns that folder."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise UserInputError(f"--repo_id {repo_id!r}: {error}") from None
    folder_kind(folder)  # a folder we can make self-contained, checked before the model loads
    contents = dict(repo_id=repo_id, datasets=datasets, base_model=base_model, license=license,
                    mmbench_result=mmbench_result, dtype=dtype, max_shard_size=max_shard_size)
    if dry_run is not None:
        with atomic_output_folder(dry_run, force, inputs=[folder]) as staging:  # OUT is checked before loading
            write_upload_folder(folder, staging, **contents)
        return dry_run
    with tempfile.TemporaryDirectory(prefix="llava-hf-publish-") as staging:
        write_upload_folder(folder, staging, **contents)
        return upload_folder(staging, repo_id, private=private, revision=revision, token=token,
                             commit_message=commit_message or f"Upload {os.path.basename(os.path.normpath(folder))}")


def write_upload_folder(folder: str, staging: str, repo_id: str, datasets=(), base_model=(),
                        license: str = LICENSE_PLACEHOLDER, mmbench_result: str | None = None, dtype: str = "auto",
                        max_shard_size: str = DEFAULT_MAX_SHARD_SIZE) -> None:
    """Write into `staging` what `publish` uploads for `folder`: weights with adapters merged and backbones
    materialised, code, processor, no local paths, training summary, model card and requirements.txt."""
    summary = training_summary(folder)
    mmbench = read_mmbench_result(mmbench_result, folder)  # a wrong path stops here, before the model loads
    model, processor = load_merged(folder, dtype)
    forget_local_paths(model.config)
    card = build_model_card(model.config, repo=repo_id, training=summary, mmbench=mmbench, datasets=datasets,
                            base_model=base_model, license=license)
    save_model_folder(model, processor, staging, max_shard_size)
    write_training_summary(staging, summary)
    save_model_card(card, staging)


def folder_listing(folder: str) -> list[tuple[str, int]]:
    """(path relative to `folder`, size in bytes) of every file under it, sorted: what a dry run shows."""
    files = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            files.append((os.path.relpath(path, folder).replace(os.sep, "/"), os.path.getsize(path)))
    return sorted(files)


def forget_local_paths(config) -> None:
    """Local paths mean nothing on the Hub (and may say too much): source fields that are not Hub ids are cleared,
    as are the sub-configs' `_name_or_path`. The folder holds every weight, so nothing is rebuilt from them."""
    from .model_card import base_models

    hub_ids = set(base_models(config))
    for field in ("text_model_name_or_path", "vision_model_name_or_path"):
        if getattr(config, field, None) not in hub_ids:
            setattr(config, field, None)
    for sub_config in (config.text_config, config.vision_config):
        if sub_config.name_or_path not in hub_ids:
            sub_config.name_or_path = ""


def upload_folder(folder: str, repo_id: str, private: bool = False, revision: str | None = None,
                  token: str | None = None, commit_message: str = "Upload model"):
    """`create_repo` (kept if it exists) + `upload_folder`, on branch `revision` when given (created if needed).
    No network, offline mode or a refusal from the Hub is one `UserInputError` line naming the repository."""
    from ..hub_errors import network_errors_as_user_errors

    with network_errors_as_user_errors(f"cannot upload to {repo_id}"):
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model", revision=revision,
                                 commit_message=commit_message)
