"""Model families shipped by llava_hf; `register()` wires them into transformers' Auto classes (and the
`packed_sdpa` attention into its attention interface)."""

from . import internlm2, llava_internlm2, packed_sdpa


def register():
    internlm2.register()
    llava_internlm2.register()
    packed_sdpa.register()
