"""Model families shipped by llava_hf, registered with transformers' Auto classes (and the packed-row attentions with
its attention interface) when this package is imported."""

from . import internlm2, llava_internlm2, packed_attention


def register():
    internlm2.register()
    llava_internlm2.register()
    packed_attention.register()


register()
