"""Model families shipped by llava_hf, registered with transformers' Auto classes when this package is imported."""

from . import internlm2, llava_internlm2


def register():
    internlm2.register()
    llava_internlm2.register()


register()
