"""Shipped folders in plain environments of other transformers releases, without llava_hf (`transformers_envs`).

The stock export (`llava-hf export-hf`) gives our ids, pixels, logits and 20-token greedy output in transformers
4.49 (the oldest release its card states), 4.57 (what many serving stacks pin), 5.17 and the newest 5.x; our
remote-code folder (`llava-hf merge`) does the same in 5.17 (the oldest release the package supports) and the
newest 5.x, and in 4.x every Auto class says which release it needs instead of failing on an import. One Python
per release runs every folder. The model is the demo's (and the same with a SigLIP encoder and a feature-layer
list), with InternLM2's published rope (base 1e6, dynamic NTK x2, which 4.x reads only from `rope_theta` /
`rope_scaling`) and a context shorter than the prompt, so the scaled rope is in every logit compared. The
environments are built on the first run (about a minute) and cached; without the package index the tests are
skipped.
"""

import pytest
from packaging.version import Version

from llava_hf.cli.main import main as cli
from llava_hf.demo.prepare import DEMO_MODEL
from llava_hf.export.transformers4_files import STOCK_MIN_TRANSFORMERS_VERSION
from llava_hf.inference import load_model_and_processor
from llava_hf.models.llava_internlm2.transformers_version import MIN_TRANSFORMERS_VERSION
from llava_hf.testing import build_tiny_llava
from tests.export.shipping_helpers import assert_runs_like_ours, chat_inputs, our_outputs, run_folders
from tests.export.transformers_envs import newest_release, transformers_env

TRANSFORMERS_4 = "4.57.6"
NEWEST_5 = ">=5,<6"
INTERNLM2_ROPE = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e6}  # internlm2(-chat)-7b, 2.5
SHORT_CONTEXT = 24  # the prompt is 32 tokens: dynamic NTK scales the rope from the first forward on

pytestmark = pytest.mark.slow


def release(wanted: str) -> str:
    """A version, or the newest release within a specifier."""
    return newest_release(wanted) if wanted[0] in "<>=!~" else wanted


# The demo's CLIP model, and a SigLIP one from a two-tower folder with a feature-layer list (stock `full`, 0 CLS)
ENCODERS = {"clip": {}, "siglip": dict(vision_model_type="siglip", vision_feature_layer=[-2, -1])}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, tiny_tokenizer_dir, image):
    """Per encoder: our outputs (the folder as llava_hf loads it), its `export-hf` folder and its `merge` folder."""
    shipped = {}
    for encoder, options in ENCODERS.items():
        root = tmp_path_factory.mktemp(f"demo_model_{encoder}")
        model, processor = build_tiny_llava(save_dir=str(root / "parts"), tokenizer_dir=tiny_tokenizer_dir,
                                            **DEMO_MODEL, **options)
        model.config.text_config.rope_parameters = dict(INTERNLM2_ROPE)
        model.config.text_config.max_position_embeddings = SHORT_CONTEXT
        model.save_pretrained(root / "model")
        processor.save_pretrained(root / "model")
        model, processor = load_model_and_processor(str(root / "model"), torch_dtype="float32")
        rope = model.config.text_config.rope_parameters
        assert {key: rope[key] for key in INTERNLM2_ROPE} == INTERNLM2_ROPE  # the settings under test, reloaded
        assert cli(["export-hf", str(root / "model"), str(root / "stock")]) == 0
        assert cli(["merge", str(root / "model"), str(root / "merged")]) == 0
        shipped[encoder] = (our_outputs(model, processor, chat_inputs(processor, image)), root / "stock",
                            root / "merged")
    return shipped


@pytest.mark.parametrize("wanted", [STOCK_MIN_TRANSFORMERS_VERSION, TRANSFORMERS_4, MIN_TRANSFORMERS_VERSION, NEWEST_5])
def test_shipped_folders_in_plain_transformers(wanted, shipped, image, tmp_path, run_without_llava_hf):
    version = release(wanted)
    remote_code_runs = Version(version) >= Version(MIN_TRANSFORMERS_VERSION)
    folders = {}
    for encoder, (_, stock_dir, merged_dir) in shipped.items():  # every folder in one Python of this release
        folders[f"{encoder} stock"] = (stock_dir, "stock")
        folders[f"{encoder} remote"] = (merged_dir, "remote" if remote_code_runs else "refused")
    outputs = run_folders(run_without_llava_hf, folders, image, tmp_path, pythonpath=transformers_env(version))
    assert {outputs[name]["transformers_version"] for name in folders} == {version}

    for encoder, (ours, _, _) in shipped.items():
        stock = outputs[f"{encoder} stock"]
        assert stock["classes"][:2] == ["transformers.models.llava.modeling_llava.LlavaForConditionalGeneration",
                                        "transformers.models.llava.processing_llava.LlavaProcessor"]
        pixels, logits = assert_runs_like_ours(stock, ours)
        print(f"transformers {version}, {encoder} stock export vs ours: max abs pixel difference {pixels:.2e}, "
              f"logit {logits:.2e}")

        remote = outputs[f"{encoder} remote"]
        if remote_code_runs:
            assert remote["classes"][0].startswith("transformers_modules.")
            pixels, logits = assert_runs_like_ours(remote, ours)
            print(f"transformers {version}, {encoder} remote code vs ours: max abs pixel difference {pixels:.2e}, "
                  f"logit {logits:.2e}")
            continue
        # an older transformers: every entry point says which release the code needs, and what to load instead
        for auto_class, message in remote["refusals"].items():
            assert message is not None, f"{auto_class} loaded the remote code in transformers {version}"
            assert message.startswith(f"ImportError: transformers>={MIN_TRANSFORMERS_VERSION} is required"), message
            assert f"found transformers=={version}" in message and "llava-hf export-hf" in message, message
