"""The built-in demo: synthetic shapes data (`synthetic`), a tiny random InternLM2 + CLIP, its recipes (package
data under `recipes/`) and where it all lives (`paths`). `examples/train.py` with no data or model runs it."""
