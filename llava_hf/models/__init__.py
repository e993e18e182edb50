"""Model families shipped by llava_hf; `register()` wires them into transformers' Auto classes."""

from . import internlm2, llava_internlm2


def register():
    internlm2.register()
    llava_internlm2.register()
