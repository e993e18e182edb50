"""Model families shipped by llava_hf, registered with transformers' Auto classes (and the `packed_sdpa` attention
with its attention interface) when this package is imported."""

from . import internlm2, llava_internlm2, packed_sdpa


def register():
    internlm2.register()
    llava_internlm2.register()
    packed_sdpa.register()


register()
