"""Placeholder loader: a full model folder through the Auto classes (extended by the chat work)."""


def load_model_and_processor(model_name_or_path, *, visual_encoder=None, llava=None, torch_dtype=None, bits=None,
                             device_map=None):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, dtype=torch_dtype, device_map=device_map)
    return model.eval(), AutoProcessor.from_pretrained(model_name_or_path)
