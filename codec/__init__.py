"""codec: the VQGAN tokenizer, codebook levels, entropy coding, the .vqb bitstream and packets.

Depends on neither `recovery` nor `simnet`.
"""

from .tokens import LossyTokenGrid, TokenGrid

__all__ = ["TokenGrid", "LossyTokenGrid"]
__version__ = "0.1.0"
