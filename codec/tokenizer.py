"""The VQGAN tokenizer: an image becomes a grid of codebook indices (f=16) and back.

One readable module in the manner of nanoGPT's model.py. Module and parameter names follow the
taming-transformers VQModel layout exactly (encoder.*, decoder.*, quant_conv, post_quant_conv,
quantize.embedding.weight) so that a real taming checkpoint loads into this class unchanged;
see codec/checkpoint.py for the loader.

Pixels are float tensors in [-1, 1], shape (B, 3, H, W). Any H, W works: `encode` pads to a
multiple of the downsampling factor by edge replication, `decode` returns the padded size and
cropping back to the image is the caller's (`ImageCodec.decode` crops to `TokenGrid.image_size`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tokens import nearest_codes


@dataclass
class TokenizerConfig:
    ch: int = 32
    ch_mult: tuple[int, ...] = (1, 2, 2, 4, 8)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = ()  # feature-map sizes (at `resolution`) that get attention
    resolution: int = 128  # nominal training size; only used to place attn_resolutions
    in_channels: int = 3
    out_ch: int = 3
    z_channels: int = 256
    embed_dim: int = 32
    n_embed: int = 1024
    dropout: float = 0.0
    # taming normalises in 32 groups; at ch=32 that is one channel per group (instance
    # normalisation), which strips each feature map of its mean at full resolution
    norm_groups: int = 32
    # ours: the decoder's last normalisation hands back, through a learned map that starts at zero,
    # the per-channel mean and scale it removes (RestoringNorm; an experiment on colour drift,
    # docs/models.md: no shipped weights use it)
    restore_stats: bool = False
    # EMA codebook (ours): taming's checkpoints learn the codebook by gradient; both decode alike.
    ema_decay: float = 0.99
    commitment: float = 0.25
    restart_after: int = 20  # a code unused for this many training steps moves onto fresh data

    def __post_init__(self):
        widths = {self.ch * m for m in self.ch_mult}
        if self.norm_groups < 1 or any(w % self.norm_groups for w in widths):
            raise ValueError(f"norm_groups {self.norm_groups} does not divide the channel widths {sorted(widths)}")

    @property
    def factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ch_mult"] = list(self.ch_mult)
        d["attn_resolutions"] = list(self.attn_resolutions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown tokenizer config keys: {sorted(unknown)}")
        d = dict(d)
        for key in ("ch_mult", "attn_resolutions"):
            if key in d:
                d[key] = tuple(int(v) for v in d[key])
        return cls(**d)


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU, in place when no gradient is being recorded (inference): the same numbers without
    another full-resolution tensor to allocate and fill."""
    return F.silu(x, inplace=not torch.is_grad_enabled())


def Normalize(channels: int, groups: int = 32) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class RestoringNorm(nn.GroupNorm):
    """GroupNorm plus a learned per-channel shift computed from what it removes: each channel's
    mean and log standard deviation over the picture. Where a group is one channel (taming's 32
    groups at 32 channels), GroupNorm alone erases each feature map's mean, and with it, ahead of
    the output convolution, the picture's overall colour. The map starts at zero: an untrained
    RestoringNorm is the GroupNorm it extends."""

    def __init__(self, channels: int, groups: int = 32):
        super().__init__(groups, channels, eps=1e-6, affine=True)
        self.restore = nn.Conv2d(2 * channels, channels, 1)
        nn.init.zeros_(self.restore.weight)
        nn.init.zeros_(self.restore.bias)

    def forward(self, x):
        var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True)
        stats = torch.cat([mean, 0.5 * torch.log(var + self.eps)], dim=1)
        return super().forward(x) + self.restore(stats).to(x.dtype)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float, groups: int = 32):
        super().__init__()
        self.norm1 = Normalize(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = Normalize(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x):
        h = self.conv1(silu(self.norm1(x)))
        h = self.conv2(self.dropout(silu(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return h.add_(x) if not torch.is_grad_enabled() else x + h


class AttnBlock(nn.Module):
    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.norm = Normalize(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).reshape(b, 1, c, h * w).transpose(2, 3) for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)
        y = y.transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(y)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # taming's asymmetric padding


# A 3x3 convolution of a nearest-neighbour 2x upsampling equals a stride-2 transposed
# convolution of the input with a 4x4 kernel: along each axis an output pixel sees two input
# pixels, weighted by the sums of the taps that fall on each. Same sums, 2.25x fewer products,
# and no upsampled tensor (docs/models.md, "Speed").
_PHASE_TAPS = ((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0))


def upsampling_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, 3, 3) weights of `conv(upsample2x(x))` -> (in, out, 4, 4) weights of
    `conv_transpose2d(x, stride=2, padding=1)` giving the same output."""
    taps = torch.tensor(_PHASE_TAPS, dtype=weight.dtype, device=weight.device)
    return torch.einsum("ka,lb,oiab->iokl", taps, taps, weight).contiguous()


def transposed_fast_under_autocast(device_type: str) -> bool:
    """Whether the transposed form is the faster one under bf16 autocast: on a CPU whose oneDNN runs
    bf16 natively (measured 1.3x faster there), not where bf16 is emulated (measured 2.4x slower)
    nor on CUDA (not timed)."""
    return device_type == "cpu" and _cpu_native_bf16()


@functools.cache
def _cpu_native_bf16() -> bool:
    from .hardware import cpu_has_native_bf16

    return cpu_has_native_bf16()


class Upsample(nn.Module):
    transposed_at_inference = True  # False: taming's form at inference too (benchmarks compare both)

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self._kernel: tuple[tuple, torch.Tensor] | None = None  # (weight's identity, kernel)

    def forward(self, x):
        # training keeps taming's form (its gradient is the weight's own); so does bf16 where the
        # transposed form measured slower (emulated bf16) or was never timed (CUDA): docs/models.md
        if (torch.is_grad_enabled() or not self.transposed_at_inference
                or (torch.is_autocast_enabled(x.device.type) and not transposed_fast_under_autocast(x.device.type))):
            return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        w = self.conv.weight
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        if self._kernel is None or self._kernel[0] != key:
            self._kernel = (key, upsampling_kernel(w.detach()))
        return F.conv_transpose2d(x, self._kernel[1], self.conv.bias, stride=2, padding=1)


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, 1, 1)
        in_mult = (1,) + tuple(cfg.ch_mult)
        res = cfg.resolution
        self.down = nn.ModuleList()
        for i, mult in enumerate(cfg.ch_mult):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = cfg.ch * in_mult[i], cfg.ch * mult
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, cfg.dropout, cfg.norm_groups))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    stage.attn.append(AttnBlock(block_in, cfg.norm_groups))
            if i != len(cfg.ch_mult) - 1:
                stage.downsample = Downsample(block_in)
                res //= 2
            self.down.append(stage)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, cfg.dropout, cfg.norm_groups)
        self.mid.attn_1 = AttnBlock(block_in, cfg.norm_groups)
        self.mid.block_2 = ResnetBlock(block_in, block_in, cfg.dropout, cfg.norm_groups)
        self.norm_out = Normalize(block_in, cfg.norm_groups)
        self.conv_out = nn.Conv2d(block_in, cfg.z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for stage in self.down:
            for j, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[j](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        block_in = cfg.ch * cfg.ch_mult[-1]
        res = cfg.resolution // cfg.factor
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, cfg.dropout, cfg.norm_groups)
        self.mid.attn_1 = AttnBlock(block_in, cfg.norm_groups)
        self.mid.block_2 = ResnetBlock(block_in, block_in, cfg.dropout, cfg.norm_groups)
        up = []
        for i in reversed(range(len(cfg.ch_mult))):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            block_out = cfg.ch * cfg.ch_mult[i]
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, cfg.dropout, cfg.norm_groups))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    stage.attn.append(AttnBlock(block_in, cfg.norm_groups))
            if i != 0:
                stage.upsample = Upsample(block_in)
                res *= 2
            up.insert(0, stage)  # keep taming's index order: up[0] is the full-resolution stage
        self.up = nn.ModuleList(up)
        self.norm_out = (RestoringNorm(block_in, cfg.norm_groups) if cfg.restore_stats
                         else Normalize(block_in, cfg.norm_groups))
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, 1, 1)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for stage in reversed(self.up):
            for j, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[j](h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser. `embedding.weight` is taming's codebook parameter; we update it by
    exponential moving averages with dead-code restarts (van den Oord et al.; Jukebox), which keeps
    the whole codebook in use on a short CPU budget."""

    def __init__(self, n_embed: int, embed_dim: int, decay: float, commitment: float,
                 restart_after: int):
        super().__init__()
        self.n_embed, self.embed_dim = n_embed, embed_dim
        self.decay, self.commitment, self.restart_after = decay, commitment, restart_after
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)
        self.embedding.weight.requires_grad_(False)
        self.register_buffer("ema_count", torch.ones(n_embed), persistent=False)
        self.register_buffer("ema_sum", self.embedding.weight.data.clone(), persistent=False)
        self.register_buffer("unused_steps", torch.zeros(n_embed, dtype=torch.long), persistent=False)
        self.register_buffer("initialised", torch.tensor(False), persistent=False)

    def forward(self, z: torch.Tensor):
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d).float()
        if self.training and not bool(self.initialised):
            self._restart(torch.arange(self.n_embed), flat)
            self.initialised.fill_(True)
        indices = nearest_codes(flat, self.embedding.weight)
        if self.training:
            self._ema_update(flat, indices)
        zq = self.embedding(indices).view(b, h, w, d).permute(0, 3, 1, 2)
        loss = self.commitment * F.mse_loss(z.float(), zq.detach().float())
        zq = z + (zq - z).detach()  # straight-through gradient to the encoder
        return zq, loss, indices.view(b, h, w)

    @torch.no_grad()
    def _ema_update(self, flat, indices):
        onehot = F.one_hot(indices, self.n_embed).type(flat.dtype)
        count = onehot.sum(0)
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + self.n_embed * 1e-5) * n
        self.embedding.weight.data.copy_(self.ema_sum / smoothed[:, None])
        self.unused_steps.add_(1).masked_fill_(count > 0, 0)
        dead = torch.nonzero(self.unused_steps >= self.restart_after).flatten()
        if dead.numel() > 0:
            self._restart(dead, flat)

    @torch.no_grad()
    def _restart(self, codes, flat):
        """Move unused codes onto randomly chosen encoder outputs of this batch."""
        pick = torch.randint(0, flat.shape[0], (codes.numel(),), device=flat.device)
        noise = 0.01 * flat.std() * torch.randn(codes.numel(), flat.shape[1], device=flat.device)
        fresh = flat[pick] + noise
        self.embedding.weight.data[codes] = fresh
        self.ema_sum[codes] = fresh
        self.ema_count[codes] = 1.0
        self.unused_steps[codes] = 0


class VQModel(nn.Module):
    """taming.models.vqgan.VQModel, minus the training loss: encoder -> quant_conv -> quantize ->
    post_quant_conv -> decoder."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim, cfg.ema_decay, cfg.commitment,
                                        cfg.restart_after)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W), H and W multiples of the factor -> pre-quantisation latent."""
        return self.quant_conv(self.encoder(x))

    def decode_code(self, zq: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(zq))

    def decode_indices(self, indices: torch.Tensor, codebook: torch.Tensor | None = None):
        """(B, h, w) indices -> pixels, optionally through a smaller codebook (a K-means level)."""
        codebook = self.quantize.embedding.weight if codebook is None else codebook
        zq = F.embedding(indices, codebook).permute(0, 3, 1, 2).contiguous()
        return self.decode_code(zq)

    def forward(self, x: torch.Tensor):
        z = self.encode_latent(x)
        zq, vq_loss, indices = self.quantize(z)
        return self.decode_code(zq), vq_loss, indices


def pad_to_multiple(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Edge-replicate (B, C, H, W) up to multiples of `factor`; crop back with [..., :H, :W]."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % factor, (-w) % factor
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
