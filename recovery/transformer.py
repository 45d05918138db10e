"""A bidirectional masked transformer over VQ token grids (MaskGIT style), in the manner of
nanoGPT's model.py: one file, a config dataclass, no framework.

One model serves every codebook level: each level has its own rows in one embedding table and
its own slice of the output layer (offsets in `level_offsets`), and a learned level embedding is
added to every position. Positions are a learned row embedding plus a learned column embedding,
so any grid up to `max_side` x `max_side` tokens works (64 x 64 tokens = 1024 x 1024 pixels).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class TransformerConfig:
    levels: tuple[int, ...] = (16, 64, 256, 1024)
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 256
    max_side: int = 64
    dropout: float = 0.0
    # > 0: the model holds each level's codebook vectors (this many dimensions), adds them to its
    # input embeddings and scores each code by its closeness to a predicted vector, so codes that
    # decode alike start out alike instead of as unrelated symbols; 0: symbols only
    code_dim: int = 0
    # with code vectors: each position also sees the mean code vector of its received 3x3 and 5x5
    # neighbours (and how many there are), the locality a token grid has and that attention would
    # otherwise have to discover from the position tables
    local_features: bool = False
    # True: each position also sees the previous frame's token there (its embedding through
    # `prev_in`, plus a learned time embedding), so the model recovers a frame of a stream from
    # what it received of it and the frame before; `prev_in` starts at zero. A copy gate adds a
    # learned, per-position score to the previous token's logit: copying is what a stream mostly
    # needs, and a path that must learn it through the embeddings learns it slowly (measured:
    # 17% top-1 after 250 steps, against 86% for plain copying)
    temporal: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["levels"] = list(self.levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown transformer config keys: {sorted(unknown)}")
        d = dict(d)
        d["levels"] = tuple(int(k) for k in d.get("levels", cls.levels))
        return cls(**d)

    @property
    def level_offsets(self) -> dict[int, int]:
        offsets, total = {}, 0
        for k in self.levels:
            offsets[k] = total
            total += k
        return offsets

    @property
    def vocab_size(self) -> int:
        return sum(self.levels)


# the copy gate's initial score: the previous token starts out e^4 (about 55) times as likely as
# the spatial model alone would make it
COPY_PRIOR = 4.0


class SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = SelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class MaskedTokenTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size + 1, cfg.n_embd)  # last row: the mask token
        if cfg.code_dim:
            # all levels' codebooks stacked like tok_emb's rows (mask row zero), unit RMS norm;
            # filled by set_codebooks() before training, loaded with the weights after
            self.register_buffer("codes", torch.zeros(cfg.vocab_size + 1, cfg.code_dim))
            self.code_in = nn.Linear(cfg.code_dim, cfg.n_embd, bias=False)
            self.code_out = nn.Linear(cfg.n_embd, cfg.code_dim, bias=False)
            self.code_scale = nn.Parameter(torch.ones(()))
        if cfg.code_dim and cfg.local_features:
            self.local_in = nn.Linear(2 * cfg.code_dim + 2, cfg.n_embd)
        if cfg.temporal:
            self.time_emb = nn.Parameter(torch.zeros(cfg.n_embd))
            self.prev_in = nn.Linear(cfg.n_embd, cfg.n_embd)
            self.copy_gate = nn.Linear(cfg.n_embd, 1)
        self.row_emb = nn.Embedding(cfg.max_side, cfg.n_embd)
        self.col_emb = nn.Embedding(cfg.max_side, cfg.n_embd)
        self.level_emb = nn.Embedding(len(cfg.levels), cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size)
        self.apply(self._init)
        if cfg.temporal:
            nn.init.zeros_(self.prev_in.weight)
            nn.init.zeros_(self.prev_in.bias)
            nn.init.zeros_(self.copy_gate.weight)
            nn.init.constant_(self.copy_gate.bias, COPY_PRIOR)

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def local_means(self, tokens: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        """(B, h, w) tokens with offsets, missing mask -> (B, h*w, 2D+2): mean received code
        vector in the 3x3 and 5x5 neighbourhoods (centre excluded) and their received shares."""
        b, h, w = tokens.shape
        d = self.config.code_dim
        known = (~missing).float()[:, None]
        vectors = self.codes[tokens].permute(0, 3, 1, 2) * known
        out = []
        for size in (3, 5):
            kernel = torch.ones(1, 1, size, size, device=tokens.device)
            kernel[0, 0, size // 2, size // 2] = 0
            sums = F.conv2d(vectors, kernel.expand(d, 1, size, size), padding=size // 2, groups=d)
            counts = F.conv2d(known, kernel, padding=size // 2)
            out += [sums / counts.clamp_min(1), counts / (size * size - 1)]
        return torch.cat(out, 1).permute(0, 2, 3, 1).reshape(b, h * w, -1)

    @property
    def mask_id(self) -> int:
        return self.config.vocab_size

    @staticmethod
    def normalise_codebook(codebook: torch.Tensor) -> torch.Tensor:
        codebook = codebook.float()
        return codebook / codebook.pow(2).sum(1).mean().sqrt().clamp_min(1e-8)

    def set_codebooks(self, codebooks: dict[int, torch.Tensor]) -> None:
        cfg = self.config
        for level, offset in cfg.level_offsets.items():
            cb = codebooks[level]
            if tuple(cb.shape) != (level, cfg.code_dim):
                raise ValueError(f"codebook of level {level} has shape {tuple(cb.shape)}, "
                                 f"expected ({level}, {cfg.code_dim})")
            self.codes[offset: offset + level] = self.normalise_codebook(cb)

    def codebook_matches(self, level: int, codebook: torch.Tensor, tol: float = 1e-2) -> bool:
        """Whether `codebook` is the one this model was trained with (up to fp16 storage)."""
        if not self.config.code_dim:
            return True
        offset = self.config.level_offsets[level]
        if tuple(codebook.shape) != (level, self.config.code_dim):
            return False
        stored = self.codes[offset: offset + level]
        return bool((self.normalise_codebook(codebook) - stored).abs().max() < tol)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, h, w) token ids (with level offsets; the mask id) -> (B, h*w, n_embd)."""
        b, h, w = tokens.shape
        x = self.tok_emb(tokens.view(b, h * w))
        if self.config.code_dim:
            x = x + self.code_in(self.codes[tokens.view(b, h * w)])
        return x

    def forward(self, indices: torch.Tensor, missing: torch.Tensor, level: int,
                offset: tuple[int, int] = (0, 0), at: torch.Tensor | None = None,
                previous: torch.Tensor | None = None) -> torch.Tensor:
        """indices (B, h, w) at `level`, missing (B, h, w) bool -> logits (B, h, w, level), or
        (N, level) for the N positions where the bool grid `at` is set (the lost ones, usually:
        the output layer is a large share of the time and only they need it).

        `offset` shifts the grid's rows and columns in the position tables: training draws it at
        random so that every row and column embedding is trained (crops are smaller than
        `max_side`) and the model cannot lean on absolute position. `previous` (B, h, w): the
        previous frame's tokens at the same level, for a temporal model (None: no previous frame)."""
        cfg = self.config
        b, h, w = indices.shape
        if level not in cfg.level_offsets:
            raise ValueError(f"this transformer knows levels {list(cfg.levels)}, not {level}")
        oy, ox = offset
        if h + oy > cfg.max_side or w + ox > cfg.max_side:
            raise ValueError(f"grid {h}x{w} exceeds the transformer's {cfg.max_side}x{cfg.max_side}")
        offset = cfg.level_offsets[level]
        tokens = torch.where(missing, torch.full_like(indices, self.mask_id), indices + offset)
        x = self.embed(tokens)
        if previous is not None:
            if not cfg.temporal:
                raise ValueError("this transformer is not temporal: it takes no previous frame")
            x = x + self.prev_in(self.embed(previous + offset) + self.time_emb)
        if cfg.code_dim:
            if cfg.local_features:
                x = x + self.local_in(self.local_means(tokens, missing))
        pos = (self.row_emb.weight[oy:oy + h, None, :] + self.col_emb.weight[None, ox:ox + w, :]).view(h * w, -1)
        x = x + pos[None] + self.level_emb.weight[cfg.levels.index(level)]
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        weight, bias = self.output_layer(level)
        if at is not None:
            x = x[at.reshape(b, h * w)]
            logits = F.linear(x, weight, bias)
            prev = previous[at] if previous is not None else None
        else:
            x = x.reshape(b * h * w, -1)
            logits = F.linear(x, weight, bias)
            prev = previous.reshape(-1) if previous is not None else None
        if prev is not None:  # the copy gate: the previous token's logit raised by a learned score
            logits = logits.scatter_add(1, prev[:, None], self.copy_gate(x).to(logits.dtype))
        return logits if at is not None else logits.view(b, h, w, level)

    def output_layer(self, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (K, n_embd), bias (K,)) of the level's logits. With code vectors the closeness
        score s (q.c - |c|^2 / 2), q = code_out(x), i.e. -s |q - c|^2 / 2 + const, so codes near
        the predicted vector q score high, is folded into the head: one matrix product, not three
        passes over a (tokens x K) array."""
        offset = self.config.level_offsets[level]
        weight = self.head.weight[offset: offset + level]
        bias = self.head.bias[offset: offset + level]
        if self.config.code_dim:
            codes = self.codes[offset: offset + level]
            weight = weight + self.code_scale * (codes @ self.code_out.weight)
            bias = bias - 0.5 * self.code_scale * codes.pow(2).sum(1)
        return weight, bias


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
