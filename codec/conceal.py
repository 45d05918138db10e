"""Loss-aware decoding: a copy of the tokenizer's decoder that is told which tokens were lost and
is trained to render them from their surroundings (Grace, NSDI 2024, for VQ tokens).

The lost-token mask enters as one more input channel of `post_quant_conv`; its weights start at
zero, so an untrained concealing decoder is the tokenizer's decoder. The codec uses it only for a
grid with lost tokens: with nothing lost the lossless decode is unchanged by construction.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn

from .safe_weights import check_state, read_weights, save_weights
from .tokenizer import Decoder, TokenizerConfig, VQModel

FORMAT = "simnet-conceal/1"


class ConcealError(ValueError):
    """A concealment weights file that cannot be used with this codec."""


class ConcealingDecoder(nn.Module):
    """(code vectors (B, D, h, w), lost (B, 1, h, w) in {0, 1}) -> pixels (B, 3, 16h, 16w)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.config = cfg
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim + 1, cfg.z_channels, 1)
        self.decoder = Decoder(cfg)

    @classmethod
    def from_tokenizer(cls, model: VQModel, lost_offset: torch.Tensor | None = None) -> "ConcealingDecoder":
        """The tokenizer's own decoder, with a mask channel whose weights are `lost_offset`
        (z_channels,): zero (a mask that does nothing yet) unless given, as joint loss-aware
        training of the tokenizer gives it (simnet/training/tokenizer.py, `--conceal`)."""
        out = cls(model.config)
        out.decoder = copy.deepcopy(model.decoder)
        with torch.no_grad():
            out.post_quant_conv.weight.zero_()
            out.post_quant_conv.weight[:, :-1] = model.post_quant_conv.weight
            if lost_offset is not None:
                out.post_quant_conv.weight[:, -1, 0, 0] = lost_offset.detach().float()
            out.post_quant_conv.bias.copy_(model.post_quant_conv.bias)
        return out

    def forward(self, zq: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
        x = torch.cat([zq, lost.to(zq.dtype)], 1)
        return self.decoder(self.post_quant_conv(x))


def save_concealer(model: ConcealingDecoder, path: Path, tokenizer_checksum: str, info: dict | None = None) -> None:
    """Written with the checksum of the tokenizer whose token grids it was trained on."""
    save_weights(model.state_dict(), path, FORMAT, model.config.to_dict(),
                 {**(info or {}), "tokenizer_sha256": tokenizer_checksum})


def load_concealer(path: Path, tokenizer_checksum: str | None = None) -> ConcealingDecoder:
    """Refuses weights trained for another tokenizer (their code vectors mean other things)."""
    state, config, info = read_weights(path, FORMAT, ConcealError)
    try:
        cfg = TokenizerConfig.from_dict(config)
    except (KeyError, ValueError, TypeError) as e:
        raise ConcealError(f"{path}: bad config in metadata ({e})") from None
    if tokenizer_checksum and info.get("tokenizer_sha256") not in (None, tokenizer_checksum):
        raise ConcealError(f"{path}: trained for another tokenizer (sha256 {str(info['tokenizer_sha256'])[:8]}, "
                           f"this one is {tokenizer_checksum[:8]})")
    model = ConcealingDecoder(cfg)
    check_state(model.state_dict(), state, str(path), ConcealError)
    model.load_state_dict(state)
    return model.eval()
