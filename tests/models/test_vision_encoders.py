"""Any vision encoder from its folder and the projector choice: SigLIP (no CLS), CLIP at another resolution and from a
two-tower folder, encoders llava_hf names nowhere (ViT, DINOv2 with registers: measured), feature-layer lists,
`linear` and 2x2-downsampling projectors; parity with stock LLaVA where it has an equivalent, and the build-time
checks that name the encoder."""

import pytest
import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoModel,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    ConvNextConfig,
    LlamaConfig,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
    ViTImageProcessorPil,
)

from llava_hf.errors import UserInputError
from llava_hf.export.stock_llava import stock_llava_config
from llava_hf.models.llava_internlm2 import (
    LlavaInternLM2Config,
    LlavaInternLM2ForConditionalGeneration,
    build_llava_from_pretrained,
)
from llava_hf.models.llava_internlm2.builder import build_llava_processor
from llava_hf.models.llava_internlm2.modeling_llava_internlm2 import downsample_patch_grid
from llava_hf.testing import build_tiny_llava
from tests.models.test_llava_internlm2 import IMAGE_TOKEN_ID, TEXT, VISION, _assert_same_as_stock

SIGLIP = SiglipVisionConfig(image_size=28, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                            num_attention_heads=2, vision_use_head=False)
TINY = dict(image_size=28, patch_size=14, text_hidden_size=64, vision_hidden_size=32)
TINY_CLIP = dict(image_size=28, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2)


@pytest.mark.parametrize("vision, strategy, layer", [
    (SIGLIP, "default", -2),  # stock's `full`: SigLIP has no CLS to drop
    (SIGLIP, "full", [-3, -1]),  # a feature-layer list: concatenated, linear_1 twice as wide
    (VISION, "default", [-2, -1]),
    (VISION, "full", -1),
])
def test_feature_selection_matches_stock_llava(vision, strategy, layer):
    torch.manual_seed(0)
    config = LlavaInternLM2Config(text_config=LlamaConfig(**TEXT), vision_config=vision, image_token_id=IMAGE_TOKEN_ID,
                                  vision_feature_select_strategy=strategy, vision_feature_layer=layer)
    ours = LlavaInternLM2ForConditionalGeneration(config).eval()
    layers = 1 if isinstance(layer, int) else len(layer)
    assert ours.multi_modal_projector.linear_1.in_features == vision.hidden_size * layers
    assert config.image_seq_length == 4 + (1 if strategy == "full" and vision is VISION else 0)
    _assert_same_as_stock(ours, stock_llava_config(config))


def test_siglip_keeps_every_patch_where_clip_drops_its_cls():
    torch.manual_seed(0)
    pixel_values = torch.randn(1, 3, 28, 28)
    for vision, dropped in ((SIGLIP, 0), (VISION, 1)):
        config = LlavaInternLM2Config(text_config=LlamaConfig(**TEXT), vision_config=vision,
                                      image_token_id=IMAGE_TOKEN_ID)
        model = LlavaInternLM2ForConditionalGeneration(config).eval()
        hidden = model.vision_tower(pixel_values, output_hidden_states=True).hidden_states[-2]
        with torch.no_grad():
            expected = model.multi_modal_projector(hidden[:, dropped:])
            torch.testing.assert_close(model.get_image_features(pixel_values), expected, rtol=0, atol=0)
        assert config.num_additional_image_tokens == dropped and config.image_seq_length == 4


def test_pixel_shuffle_and_average_pool_merge_each_2x2_block():
    features = torch.arange(2 * 9 * 2, dtype=torch.float32).reshape(2, 9, 2)  # a 3x3 grid: the last block is partial
    grid = features.reshape(2, 3, 3, 2)
    shuffled = downsample_patch_grid(features, (3, 3), "pixel_shuffle")
    pooled = downsample_patch_grid(features, (3, 3), "avg_pool")
    assert shuffled.shape == (2, 4, 8) and pooled.shape == (2, 4, 2)
    zero = torch.zeros(2)
    for image in range(2):
        blocks = [[(r, c) for r in (2 * i, 2 * i + 1) for c in (2 * j, 2 * j + 1)] for i in range(2) for j in range(2)]
        for index, block in enumerate(blocks):
            inside = [grid[image, r, c] for r, c in block if r < 3 and c < 3]
            expected = torch.cat([grid[image, r, c] if r < 3 and c < 3 else zero for r, c in block])
            assert torch.equal(shuffled[image, index], expected), (image, block)
            torch.testing.assert_close(pooled[image, index], torch.stack(inside).mean(0))
    with pytest.raises(ValueError, match="9 features per image do not form the 2x2 patch grid"):
        downsample_patch_grid(features, (2, 2), "avg_pool")


@pytest.mark.parametrize("projector", [dict(projector_type="linear"), dict(projector_downsample="pixel_shuffle"),
                                       dict(projector_downsample="avg_pool", projector_type="linear")])
def test_projector_choice_shapes_the_projector_and_the_token_count(projector):
    siglip_42 = SiglipVisionConfig(**{**SIGLIP.to_dict(), "image_size": 42})  # 3x3 patches -> 2x2 blocks
    config = LlavaInternLM2Config(text_config=LlamaConfig(**TEXT), vision_config=siglip_42,
                                  image_token_id=IMAGE_TOKEN_ID, **projector)
    model = LlavaInternLM2ForConditionalGeneration(config).eval()
    assert config.image_seq_length == (4 if "projector_downsample" in projector else 9)
    widen = 4 if projector.get("projector_downsample") == "pixel_shuffle" else 1
    assert model.multi_modal_projector.linear_1.in_features == 32 * widen
    assert hasattr(model.multi_modal_projector, "linear_2") == (projector.get("projector_type") != "linear")
    with torch.no_grad():
        features = model.get_image_features(torch.randn(2, 3, 42, 42))
    assert features.shape == (2, config.image_seq_length, TEXT["hidden_size"])


def test_downsampling_needs_the_patches_alone():
    with pytest.raises(ValueError, match="'full' strategy keeps the 1 token"):
        LlavaInternLM2Config(text_config=LlamaConfig(**TEXT), vision_config=VISION, image_token_id=IMAGE_TOKEN_ID,
                             projector_downsample="avg_pool", vision_feature_select_strategy="full")
    with pytest.raises(ValueError, match="unknown for the vision encoder 'vit'"):
        LlavaInternLM2Config(text_config=LlamaConfig(**TEXT), image_token_id=IMAGE_TOKEN_ID,
                             vision_config=AutoConfig.for_model("vit", image_size=28, patch_size=14))


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory, tiny_tokenizer_dir):
    root = tmp_path_factory.mktemp("encoders")
    build_tiny_llava(save_dir=str(root), tokenizer_dir=tiny_tokenizer_dir, **TINY)
    return str(root / "llm")


@pytest.mark.parametrize("vision_model_type", ["siglip", "clip"])
def test_two_tower_folders_give_their_vision_side_and_rebuild_bit_identically(vision_model_type, tiny_tokenizer_dir,
                                                                           tmp_path):
    """The published layout (`google/siglip-*`, `openai/clip-*`): the text tower (and SigLIP's pooling head) stay in
    the folder; a projector-only checkpoint is rebuilt from it with the same weights."""
    model, processor = build_tiny_llava(save_dir=str(tmp_path / "parts"), tokenizer_dir=tiny_tokenizer_dir,
                                        vision_model_type=vision_model_type, **TINY)
    family = vision_model_type
    assert AutoConfig.from_pretrained(tmp_path / "parts" / family).model_type == vision_model_type
    assert model.config.vision_config.model_type == f"{family}_vision_model"
    assert not any(name.startswith(("head.", "text_model.")) for name, _ in model.vision_tower.named_parameters())
    projector = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("multi_modal_projector.")}
    model.save_pretrained(tmp_path / "stage1", state_dict=dict(projector))
    processor.save_pretrained(tmp_path / "stage1")
    rebuilt = LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path / "stage1")
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in rebuilt.state_dict().items())


def test_siglip_pads_with_its_own_mean_and_resizes_without_a_crop(tiny_tokenizer_dir):
    model, processor = build_tiny_llava(tokenizer_dir=tiny_tokenizer_dir, vision_model_type="siglip", **TINY)
    assert type(processor.image_processor) is SiglipImageProcessorPil and processor.background_color == (127,) * 3
    wide = Image.new("RGB", (60, 20), (250, 10, 10))
    pixels = processor.preprocess_images([wide])
    assert pixels.shape == (1, 3, 28, 28)
    assert pixels[0, :, 0, 0].abs().max() < 0.01  # the padding: SigLIP's mean, normalised to ~0
    inputs = processor(images=[wide], text="<image>\nwhat colour?")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == model.config.image_seq_length == 4


def _save_vision_folder(folder, config, image_processor):
    AutoModel.from_config(config).save_pretrained(folder)
    image_processor.save_pretrained(folder)
    return str(folder)


def test_encoders_named_nowhere_are_measured(llm_dir, tmp_path):
    """ViT (one CLS) and DINOv2 with 4 registers load through the Auto classes; `default` drops what they put ahead of
    their patches, and the model runs."""
    vit = dict(image_size=28, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2)
    image_processor = ViTImageProcessorPil(size={"height": 28, "width": 28})
    for model_type, extra in (("vit", 1), ("dinov2_with_registers", 5)):
        kwargs = dict(vit, num_register_tokens=4) if extra == 5 else vit
        folder = _save_vision_folder(tmp_path / model_type, AutoConfig.for_model(model_type, **kwargs), image_processor)
        model, processor = build_llava_from_pretrained(llm_dir, folder)
        assert (model.config.num_additional_image_tokens, model.config.image_seq_length) == (extra, 4)
        assert model.config.vision_model_name_or_path == folder
        inputs = processor(images=[Image.new("RGB", (30, 20))], text="<image>\nhi")
        assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]


def test_encoders_llava_cannot_read_are_refused_naming_the_folder(llm_dir, tmp_path):
    clip = CLIPVisionConfig(**TINY_CLIP)
    clip_processor = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    folder = _save_vision_folder(tmp_path / "clip", clip, clip_processor)
    with pytest.raises(UserInputError, match=rf"{folder} \(clip_vision_model\): vision_feature_layer -4 does not "
                                             r"exist; the encoder has 3 hidden states"):
        build_llava_processor(llm_dir, folder, vision_feature_layer=[-2, -4])
    with pytest.raises(UserInputError, match=r"one image gives 5 tokens, but the config counts 4 .* 1 would match"):
        build_llava_processor(llm_dir, folder, num_additional_image_tokens=0)
    wrong_size = _save_vision_folder(tmp_path / "clip_224", clip, CLIPImageProcessorPil())
    with pytest.raises(UserInputError, match=rf"{wrong_size}: its image processor \(CLIPImageProcessorPil\) makes "
                                             r"\(224, 224\) images, but the encoder \(clip_vision_model\) takes "
                                             r"\(28, 28\)"):
        build_llava_processor(llm_dir, wrong_size)
    convnext = _save_vision_folder(tmp_path / "convnext", ConvNextConfig(image_size=28, num_stages=2, depths=[1, 1],
                                                                         hidden_sizes=[8, 16]), clip_processor)
    with pytest.raises(UserInputError, match=r"convnext\): its hidden states have shape \(1, 16, 3, 3\), not "
                                             r"\[images, tokens, width\]"):
        build_llava_processor(llm_dir, convnext)
    naflex = AutoConfig.for_model("siglip2_vision_model", hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    naflex.save_pretrained(tmp_path / "naflex")
    with pytest.raises(UserInputError, match="'siglip2_vision_model' has no image_size in its config: LLaVA needs a "
                                             "fixed-resolution patch encoder"):
        build_llava_processor(llm_dir, str(tmp_path / "naflex"))



@pytest.mark.parametrize("vision_model_type", ["clip_vision_model", "siglip"])
def test_a_saved_processor_reloads_the_pil_image_processor(vision_model_type, tiny_tokenizer_dir, tmp_path,
                                                           monkeypatch):
    """AutoImageProcessor picks the torchvision implementation wherever torchvision is installed (its resize gives
    other pixels): the saved processor asks for the PIL one the builder used."""
    from transformers import AutoProcessor
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    _, processor = build_tiny_llava(tokenizer_dir=tiny_tokenizer_dir, vision_model_type=vision_model_type, **TINY)
    processor.save_pretrained(tmp_path)
    backends = []
    load = AutoImageProcessor.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        backends.append(kwargs.get("backend"))
        return load(cls, *args, **kwargs)

    monkeypatch.setattr(AutoImageProcessor, "from_pretrained", classmethod(recording))
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert backends[-1] == "pil" and type(reloaded.image_processor) is type(processor.image_processor)
    image = Image.new("RGB", (50, 30), (10, 200, 30))
    assert torch.equal(reloaded.preprocess_images([image]), processor.preprocess_images([image]))
