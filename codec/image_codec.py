"""ImageCodec: pixels <-> token grids <-> bytes and packets, at any codebook level."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .bitstream import BitstreamError, BitstreamHeader, read_bitstream, write_bitstream
from .checkpoint import CheckpointError, load_tokenizer
from .colour import ColourPlane, apply as apply_chroma
from .safe_weights import file_checksum
from .entropy import Prior
from .hardware import resolve
from .images import to_tensor, to_uint8
from .levels import Level, load_levels
from .packets import DEFAULT_MTU, Packet, coarse_seed, packetize
from .tiling import blend_tiles
from .tokenizer import VQModel, pad_to_multiple
from .tokens import TokenGrid


class ImageCodec:
    """A tokenizer with its codebook levels and priors, on one device at one precision.

    `device` and `precision` as in codec.hardware.resolve: "auto" runs on CUDA where there is a
    GPU, and under bfloat16 autocast only where bf16 is native (what the model was trained with),
    in fp32 elsewhere. Token grids and code assignment stay on the CPU.
    """

    def __init__(self, model: VQModel, levels: dict[int, Level], checksum: str,
                 precision: str = "auto", threads: int | None = None,
                 tokenizer_checksum: str | None = None, device: str = "auto"):
        self.compute = resolve(device, precision)
        base = model.config.n_embed
        if base not in levels:
            raise CheckpointError(f"levels lack the base level {base} of the tokenizer")
        for k, level in levels.items():
            if level.codebook.shape[1] != model.config.embed_dim or len(level.from_base) != base:
                raise CheckpointError(f"level {k} does not fit this tokenizer "
                                      f"(embed_dim {model.config.embed_dim}, base {base})")
        self.model = model.eval().to(self.compute.device, memory_format=torch.channels_last)
        self.levels = levels
        self._codebooks: dict[int, torch.Tensor] = {}  # on the model's device
        self.concealer = None  # codec.conceal.ConcealingDecoder, where its weights ship
        self.conceal_checksum: str | None = None
        # grids of more tokens than this are encoded and decoded in overlapping tiles of at most
        # `tile_tokens` a side, sharing `tile_overlap` (codec/tiling.py): bounded memory
        self.max_tile_tokens, self.tile_tokens, self.tile_overlap = 64 * 64, 64, 8
        self.checksum = checksum  # hex sha256 over the weights files
        self.tokenizer_checksum = tokenizer_checksum or checksum  # of the tokenizer file alone
        # the folder the weights came from (codec.zoo.load_codec): models trained on this codec's
        # token grids may sit beside them
        self.weights_folder: Path | None = None
        if threads:
            torch.set_num_threads(threads)

    @property
    def precision(self) -> str:
        return self.compute.precision

    @property
    def device(self) -> str:
        return self.compute.device

    @classmethod
    def from_files(cls, tokenizer_path: Path, levels_path: Path, **kwargs) -> "ImageCodec":
        model, _ = load_tokenizer(tokenizer_path)
        levels = load_levels(levels_path)
        tokenizer_sum = file_checksum(tokenizer_path)
        digest = hashlib.sha256((tokenizer_sum + file_checksum(levels_path)).encode())
        return cls(model, levels, digest.hexdigest(), tokenizer_checksum=tokenizer_sum, **kwargs)

    @property
    def factor(self) -> int:
        return self.model.config.factor

    @property
    def level_sizes(self) -> list[int]:
        return sorted(self.levels)

    def level(self, k: int) -> Level:
        if k not in self.levels:
            raise ValueError(f"codebook level {k} is not available (have {self.level_sizes})")
        return self.levels[k]

    def prior(self, k: int) -> Prior:
        """Level K's entropy-coding prior."""
        return self.level(k).prior

    def codebook(self, k: int) -> torch.Tensor:
        """Level K's code vectors, (K, D)."""
        return self.level(k).codebook

    def _tiled(self, h: int, w: int) -> bool:
        return h * w > self.max_tile_tokens

    @torch.no_grad()
    def latent(self, rgb: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 -> (D, h, w) float32 pre-quantisation latent; a large image in tiles."""
        x = pad_to_multiple(to_tensor(rgb), self.factor)
        f = self.factor

        def run(y0, y1, x0, x1):
            part = x[..., y0 * f:y1 * f, x0 * f:x1 * f].to(self.device)
            with self.compute.autocast():
                return self.model.encode_latent(part.contiguous(memory_format=torch.channels_last)).float().cpu()

        h, w = x.shape[-2] // f, x.shape[-1] // f
        if not self._tiled(h, w):
            return run(0, h, 0, w)[0]
        return blend_tiles(run, h, w, self.tile_tokens, self.tile_overlap, 1)[0]

    @torch.no_grad()
    def encode(self, rgb: np.ndarray, level: int, rate_lambda: float | None = None) -> TokenGrid:
        """`rate_lambda` overrides the level's shipped rate-distortion trade-off (0: nearest code)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 image, got {rgb.shape} {rgb.dtype}")
        lvl = self.level(level)
        z = self.latent(rgb)
        d, h, w = z.shape
        idx = lvl.assign(z.permute(1, 2, 0).reshape(-1, d), rate_lambda).reshape(h, w)
        return TokenGrid(idx.numpy(), level, rgb.shape[:2])

    def use_concealer(self, model, checksum: str | None = None) -> None:
        """A concealing decoder (codec/conceal.py) for grids with lost tokens (`decode(lost=)`);
        `checksum`: of its weights file, for the results' meta."""
        self.concealer = model.eval().to(self.compute.device, memory_format=torch.channels_last)
        self.conceal_checksum = checksum

    @torch.no_grad()
    def decode_tensor(self, indices: torch.Tensor, level: int, lost: torch.Tensor | None = None) -> torch.Tensor:
        """(B, h, w) indices -> (B, 3, 16h, 16w) pixels in [-1, 1], uncropped, on the CPU; a large
        grid in tiles. `lost` (B, h, w) bool: the concealing decoder renders those positions."""
        if level not in self._codebooks:
            self._codebooks[level] = self.codebook(level).to(self.device)

        def run(y0, y1, x0, x1):
            part = indices[:, y0:y1, x0:x1].to(self.device)
            with self.compute.autocast():
                if lost is None:
                    return self.model.decode_indices(part, self._codebooks[level]).float().cpu()
                zq = torch.nn.functional.embedding(part, self._codebooks[level]).permute(0, 3, 1, 2)
                mask = lost[:, None, y0:y1, x0:x1].to(self.device, zq.dtype)
                return self.concealer(zq.contiguous(memory_format=torch.channels_last), mask).float().cpu()

        h, w = indices.shape[-2:]
        y = run(0, h, 0, w) if not self._tiled(h, w) else blend_tiles(
            run, h, w, self.tile_tokens, self.tile_overlap, self.factor)
        return y.clamp(-1, 1)

    def decode(self, grid: TokenGrid, lost: np.ndarray | None = None,
               chroma: ColourPlane | None = None) -> np.ndarray:
        """TokenGrid -> HxWx3 uint8 at the original image size. With `lost` (the positions a
        recovery filled) and a concealing decoder, the decoder conceals them; with nothing lost, or
        no concealer, it is the plain decode. With `chroma` (the colour side channel), the
        picture's block colours are the sent ones."""
        h, w = grid.image_size
        mask = None
        if lost is not None and lost.any():
            if self.concealer is None:
                raise CheckpointError("no concealing decoder: its weights (conceal.safetensors) are not "
                                      "in the weights folder")
            mask = torch.from_numpy(np.asarray(lost, dtype=bool))[None]
        y = self.decode_tensor(torch.from_numpy(grid.indices)[None], grid.level, mask)
        rgb = to_uint8(y[..., :h, :w])
        return rgb if chroma is None else apply_chroma(rgb, chroma)

    def to_bytes(self, grid: TokenGrid, chroma: ColourPlane | None = None) -> bytes:
        """The .vqb file; with `chroma` (codec.colour.measure of the original), version 2 with the
        colour side channel."""
        return write_bitstream(grid, self.prior(grid.level), bytes.fromhex(self.checksum), chroma)

    def from_bytes(self, data: bytes, check_model: bool = True) -> tuple[BitstreamHeader, TokenGrid]:
        header, grid = read_bitstream(data, self.prior)
        if check_model and header.model_checksum != bytes.fromhex(self.checksum)[:4]:
            raise BitstreamError(f"made by other weights (model checksum {header.model_checksum.hex()}, "
                                 f"these are {self.checksum[:8]})")
        return header, grid

    def packetize(self, grid: TokenGrid, **kwargs) -> list[Packet]:
        kwargs.setdefault("mtu", DEFAULT_MTU)
        return packetize(grid, self.prior(grid.level), **kwargs)

    @property
    def base_level(self) -> int:
        """The tokenizer's own codebook size: the level whose codes every other level groups."""
        return self.model.config.n_embed

    def check_coarse(self, level: int, coarse: int) -> None:
        """A coarse layer needs the stream at the base level (only its codes lie in one cell of
        each other level) and a smaller level that exists; ValueError naming what is wrong."""
        if level != self.base_level:
            raise ValueError(f"a coarse layer needs the stream at the base level {self.base_level} "
                             f"(each of its codes lies in one cell of a coarser level), not {level}")
        if coarse not in self.levels or coarse >= level:
            smaller = [k for k in self.level_sizes if k < level]
            raise ValueError(f"coarse level {coarse} is not one of this codec's smaller levels {smaller}")

    def cells(self, grid: TokenGrid, coarse: int) -> TokenGrid:
        """Each token's cell at level `coarse`: what the coarse layer sends."""
        self.check_coarse(grid.level, coarse)
        return TokenGrid(self.level(coarse).from_base[grid.indices], coarse, grid.image_size)

    def cell_map(self, coarse: int) -> np.ndarray:
        """(base K,) the cell at level `coarse` of each base code."""
        return self.level(coarse).from_base

    def coarse_packets(self, grid: TokenGrid, coarse: int, *, seed: int, **kwargs) -> list[Packet]:
        """The frame's coarse layer: its cells at level `coarse`, packetized like its tokens but
        interleaved with `coarse_seed(seed)` (`seed`: the frame's own interleave seed)."""
        kwargs.setdefault("mtu", DEFAULT_MTU)
        cells = self.cells(grid, coarse)
        return packetize(cells, self.prior(coarse), seed=coarse_seed(seed), coarse=True, **kwargs)
