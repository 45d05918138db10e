"""Resumable training of the concealing decoder (codec/conceal.py) under simulated token loss.

Random crops of the training split go through the frozen encoder and the codec's own quantisation
(a level drawn per batch); a mask of lost tokens is drawn per crop (codec.tokens.draw_mask:
scattered tokens as interleaved packets lose them, raster runs, rectangles); the lost positions are
filled by the receiver's recovery method (a callable, e.g. `neighbour`), and the decoder, given the
fill and the mask, learns to reproduce the original pixels: L1 + SSIM + squared error, as the
tokenizer was trained. Validation: BSDS500 val at K=1024 with 20% and 40% of tokens lost at random,
PSNR of the concealed decode; the plain decoder's PSNR on the same fills is logged once beside it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codec.checkpoint import load_tokenizer
from codec.conceal import ConcealingDecoder, load_concealer, save_concealer
from codec.images import load_rgb, to_tensor, training_images, validation_images
from codec.metrics import lost_split, psnr, ssim, to_unit
from codec.safe_weights import file_checksum
from codec.tokenizer import pad_to_multiple
from codec.tokens import LossyTokenGrid, TokenGrid, draw_mask, random_token_mask
from .tokenizer import CropSampler, LevelQuantizer
from .loop import NO_BEST, RunConfig

Fill = Callable[[LossyTokenGrid, torch.Tensor], np.ndarray]  # a recovery method's `recover`


@dataclass
class ConcealTrainConfig(RunConfig):
    out: str = "runs/conceal"
    tokenizer: str = "codec/weights/tokenizer.safetensors"
    levels: str = "codec/weights/levels.safetensors"
    steps: int = 3000
    decay_start: int = 2000
    batch: int = 6
    crop: int = 128
    lr: float = 2e-4
    min_lr_ratio: float = 0.05
    ssim_weight: float = 0.2
    l2_weight: float = 1.0
    max_ratio: float = 0.6  # training masks lose a share of tokens drawn uniformly in [0.02, max_ratio]
    train_levels: tuple[int, ...] = ()  # codebook levels of the training grids; () = all, the base level half the time
    lost_weight: float = 0.0  # pixels of lost tokens count 1 + lost_weight times in the L1 and squared terms
    val_images: int = 12
    val_ratios: tuple[float, ...] = (0.2, 0.4)


def lose(idx: torch.Tensor, mask: np.ndarray, level: int, fill: Fill, codebook: torch.Tensor) -> torch.Tensor:
    """(h, w) indices with `mask` lost -> the indices the receiver's recovery puts back."""
    grid = TokenGrid(np.where(mask, 0, idx.numpy()), level, (idx.shape[0] * 16, idx.shape[1] * 16))
    return torch.from_numpy(fill(LossyTokenGrid(grid, mask), codebook))


def pixel_weights(lost: torch.Tensor, lost_weight: float) -> torch.Tensor:
    """(B, 1, h, w) lost tokens -> (B, 1, 16h, 16w) weights of mean 1, a lost token's pixels
    1 + lost_weight times a received one's. Most pixels belong to received tokens, which the
    decoder already renders as well as it can: the weight puts the gradient where concealment happens."""
    weight = 1 + lost_weight * F.interpolate(lost.float(), scale_factor=16, mode="nearest")
    return weight / weight.mean()


def _validation_set(images, quantizer: LevelQuantizer, encoder, fill: Fill, ratios, level: int, seed: int = 1234):
    """Per image: (target pixels, {ratio: (filled code vectors, mask)}), fixed once per run."""
    rng = np.random.default_rng(seed)
    codebook = quantizer.levels[level].codebook
    out = []
    for rgb in images:
        x = to_tensor(rgb)
        xp = pad_to_multiple(x, 16).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            _, idx = quantizer(encoder(xp), level)
        cases = {}
        for r in ratios:
            h, w = idx.shape[1:]
            mask = random_token_mask((h, w), r, rng)
            filled = lose(idx[0], mask, level, fill, codebook)
            zq = F.embedding(filled[None], codebook).permute(0, 3, 1, 2).contiguous()
            cases[r] = (zq, torch.from_numpy(mask)[None, None].float())
        out.append((x, cases))
    return out


def _to_8bit(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> HxWx3 uint8."""
    return (image[0].permute(1, 2, 0) * 255).round().byte().numpy()


@torch.no_grad()
def _score(decode, val_set, ratios) -> dict:
    """Mean PSNR of the decodes, and (to see where a change comes from) over the pixels of lost
    tokens and of received ones alone."""
    out = {}
    for r in ratios:
        values, lost_values, kept_values = [], [], []
        for x, cases in val_set:
            zq, mask = cases[r]
            h, w = x.shape[-2:]
            y = decode(zq, mask).float()[..., :h, :w].clamp(-1, 1)
            y = torch.round(to_unit(y) * 255) / 255
            values.append(psnr(to_unit(x), y).item())
            split = lost_split(_to_8bit(to_unit(x)), _to_8bit(y), mask[0, 0].bool().numpy(), 16)
            lost_values.append(split["psnr_lost"])
            kept_values.append(split["psnr_received"])
        out[f"val_psnr_{r:g}"] = float(np.mean(values))
        out[f"val_lost_psnr_{r:g}"] = float(np.mean(lost_values))
        out[f"val_kept_psnr_{r:g}"] = float(np.mean(kept_values))
    return out


def train(cfg: ConcealTrainConfig, fill: Fill, log=print) -> Path:
    run = cfg.start(log)
    state = run.resumed
    compute, dev = run.compute, run.compute.device
    tokenizer, _ = load_tokenizer(Path(cfg.tokenizer))
    tokenizer_sum = file_checksum(Path(cfg.tokenizer))
    tokenizer.requires_grad_(False)
    model = ConcealingDecoder.from_tokenizer(tokenizer)
    if state is None and cfg.init:
        model.load_state_dict(load_concealer(Path(cfg.init), tokenizer_sum).state_dict())
        log(f"initialised from {cfg.init}")
    if state is not None:
        model.load_state_dict(state["model"])
    model = model.to(dev, memory_format=torch.channels_last)
    tokenizer = tokenizer.to(dev, memory_format=torch.channels_last).eval()
    quantizer = LevelQuantizer(Path(cfg.levels), cfg.seed, tuple(cfg.train_levels))
    sampler = CropSampler(training_images(), cfg.crop, cfg.seed)
    mask_rng = np.random.default_rng(cfg.seed + 7)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step, best = 0, NO_BEST
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        mask_rng.bit_generator.state = state["mask_rng"]
        quantizer.rng.bit_generator.state = state["level_rng"]
        torch.set_rng_state(state["torch_rng"])
        step, best = state["step"], state["best"]
        log(f"resumed from {run.state_path} at step {step}")
    (run.out / "config.json").write_text(json.dumps(vars(cfg), indent=1, default=list))
    base = quantizer.sizes[-1]
    val_set = _validation_set([load_rgb(p) for p in validation_images()[: cfg.val_images]], quantizer,
                              lambda x: tokenizer.encode_latent(x.to(dev)).cpu(), fill, cfg.val_ratios, base)

    def decode_plain(zq, mask):
        with compute.autocast():
            return tokenizer.decode_code(zq.to(dev)).cpu()

    def decode_concealed(zq, mask):
        with compute.autocast():
            return model(zq.to(dev), mask.to(dev)).cpu()

    if state is None:
        run.record({"step": 0, **{k.replace("val_", "plain_"): v for k, v in _score(decode_plain, val_set, cfg.val_ratios).items()}})
    model.train()

    def train_step(lr: float) -> dict[str, float]:
        x = sampler.batch(cfg.batch)
        with torch.no_grad(), compute.autocast():
            z = tokenizer.encode_latent(x.to(dev).contiguous(memory_format=torch.channels_last)).float().cpu()
        level = quantizer.draw()
        _, idx = quantizer(z, level)
        codebook = quantizer.levels[level].codebook
        masks = [draw_mask(mask_rng, *idx.shape[1:], float(mask_rng.uniform(0.02, cfg.max_ratio)))
                 for _ in range(len(idx))]
        filled = torch.stack([lose(i, m, level, fill, codebook) for i, m in zip(idx, masks)])
        zq = F.embedding(filled, codebook).permute(0, 3, 1, 2)
        lost = torch.from_numpy(np.stack(masks))[:, None].float()
        x = x.to(dev)
        with compute.autocast():
            y = model(zq.to(dev).contiguous(memory_format=torch.channels_last), lost.to(dev))
        y = y.float()
        weight = pixel_weights(lost, cfg.lost_weight).to(dev)
        l1 = ((y - x).abs() * weight).mean()
        s = ssim(to_unit(y), to_unit(x)).mean()
        loss = l1 + cfg.ssim_weight * (1 - s) + cfg.l2_weight * ((y - x).pow(2) * weight).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item(), "l1": l1.item(), "ssim": s.item(), "lost": float(lost.mean())}

    def validate() -> dict:
        model.eval()
        out = _score(decode_concealed, val_set, cfg.val_ratios)
        model.train()
        return out

    def save_best(rec: dict) -> None:
        save_concealer(model, run.out / "best.safetensors", tokenizer_sum,
                       {"step": rec["step"], **{k: v for k, v in rec.items() if k.startswith("val_")}})

    def snapshot(step: int, best: float) -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "best": best,
                "sampler_rng": sampler.rng.bit_generator.state, "mask_rng": mask_rng.bit_generator.state,
                "level_rng": quantizer.rng.bit_generator.state, "torch_rng": torch.get_rng_state()}

    return run.loop(optimizer, cfg.schedule, step, best, train_step, validate=validate,
                    score=lambda rec: float(np.mean([rec[f"val_psnr_{r:g}"] for r in cfg.val_ratios])),
                    save_best=save_best, snapshot=snapshot, val_every=cfg.val_every)
