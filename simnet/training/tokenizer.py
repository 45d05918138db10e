"""Resumable training of the tokenizer, on the CPU or CUDA.

Random crops of the training split (codec.images.training_images), channels_last, bf16 autocast
where the device has it natively (codec.hardware), L1 + SSIM reconstruction loss, EMA codebook
with dead-code restarts.
The loop, its schedule, checkpoints and log are simnet/training/loop.py's; the best weights are those
with the highest validation PSNR.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from codec.checkpoint import save_tokenizer
from codec.conceal import ConcealingDecoder, save_concealer
from .discriminator import (DiscriminatorConfig, PatchDiscriminator, adaptive_weight, generator_loss,
                            hinge_discriminator_loss)
from codec.images import load_rgb, training_images, validation_images
from codec.safe_weights import file_checksum
from codec.metrics import ciede2000, ms_ssim, psnr, ssim, to_unit
from codec.hardware import Compute, resolve
from codec.tokenizer import TokenizerConfig, VQModel, count_parameters, pad_to_multiple
from codec.tokens import draw_mask, random_token_mask
from recovery.baselines import neighbour_fill
from .loop import NO_BEST, RunConfig


@dataclass
class TrainConfig(RunConfig):
    out: str = "runs/tokenizer"
    steps: int = 4000
    decay_start: int = 2800
    batch: int = 16
    crop: int = 128
    lr: float = 4e-4
    min_lr_ratio: float = 0.02
    ssim_weight: float = 0.2
    l2_weight: float = 0.0
    # L1 on the chroma (Cb, Cr) of 4x4-pixel averages: colour over areas, which L1 and SSIM on RGB
    # pixels weigh no more than texture
    chroma_weight: float = 0.0
    # decoder fine-tuning: encoder, quant_conv and codebook frozen, the decoder fed exactly what the
    # codec feeds it (the levels' codebooks, rate-constrained assignment); the token grids, and so
    # everything trained on them (the recovery transformer), stay valid
    decoder_only_levels: str | None = None
    restore_stats: bool = False  # give the decoder a RestoringNorm at its output (codec/tokenizer.py)
    train_only: tuple[str, ...] = ()  # parameter-name prefixes to train; empty: all that may train
    best_by: str = "psnr"  # what picks best.safetensors: "psnr", "ciede2000", "lossy" or "last" (latest validation)
    # training under token loss (Grace, NSDI 2024, for VQ tokens): each crop is also decoded with a
    # random share of its tokens (up to loss_aware_max) lost and filled as the receiver's
    # `neighbour` fills them, and that decode's reconstruction loss counts loss_aware times. The
    # fill passes its gradient to the received tokens around a lost one, so the encoder, not only
    # the decoder, learns to leave in a token's neighbours what its loss takes away
    loss_aware: float = 0.0
    loss_aware_max: float = 0.5
    loss_aware_pattern: str = "mixed"  # codec.tokens.draw_mask's patterns, or "scattered" tokens only
    # with loss_aware: the lossy decode is also told which tokens were lost (a learned offset added
    # to the decoder's input at those positions, the mask channel of codec/conceal.py), trained with
    # everything else; the run then writes best-conceal.safetensors beside best.safetensors, the
    # concealing decoder that the `+conceal` recovery methods use. With nothing lost the decode is
    # the tokenizer's own, by construction
    conceal: bool = False
    # the VQGAN adversarial term (simnet/training/discriminator.py): 0 = off. The discriminator trains from
    # the first step; the generator's term counts from step `gan_start` on (a discriminator that
    # has not yet learned anything only adds noise), weighted by gan_weight x the adaptive balance
    # at the decoder's last layer
    gan_weight: float = 0.0
    gan_start: int = 0
    disc: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    val_images: int = 24
    model: TokenizerConfig = field(default_factory=TokenizerConfig)


_CHROMA = torch.tensor([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])  # BT.601 Cb, Cr


def chroma_l1(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the Cb and Cr planes of 4x4 averages of two (B, 3, H, W) pictures."""
    diff = F.avg_pool2d(y - x, 4)
    return torch.einsum("cr,brhw->bchw", _CHROMA.to(diff), diff).abs().mean()


class TrainingSetupError(ValueError):
    """Options that cannot make a run (the message names the option)."""


class CropSampler:
    """Random crops from images held in memory. Large photos are also kept at a reduced scale so
    that crops cover the object scales of 768x512 photographs, not only close-up texture."""

    def __init__(self, files: list[Path], crop: int, seed: int):
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.images: list[np.ndarray] = []
        for path in files:
            rgb = load_rgb(path)
            self.images.append(rgb)
            long_side = max(rgb.shape[:2])
            if long_side > 1000:
                scale = 768 / long_side
                size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
                self.images.append(np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS)))
        # a panorama reduced to 768 px can be shorter than a large crop: it cannot give one
        self.images = [rgb for rgb in self.images if min(rgb.shape[:2]) >= crop]
        if not self.images:
            raise TrainingSetupError(f"--crop {crop}: no training image is at least {crop} px on its short side")

    def batch(self, n: int) -> torch.Tensor:
        out = np.empty((n, self.crop, self.crop, 3), dtype=np.uint8)
        for i in range(n):
            img = self.images[self.rng.integers(len(self.images))]
            h, w = img.shape[:2]
            y = self.rng.integers(0, h - self.crop + 1)
            x = self.rng.integers(0, w - self.crop + 1)
            patch = img[y:y + self.crop, x:x + self.crop]
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            out[i] = patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1


class LevelQuantizer:
    """The codec's quantisation with the K-means levels, for decoder fine-tuning: a level drawn
    per batch (the base level half of the time), indices assigned as the encoder assigns them."""

    def __init__(self, levels_path: Path, seed: int, only: tuple[int, ...] = ()):
        """`only`: draw among these levels alone, equally often."""
        from codec.levels import load_levels

        self.levels = load_levels(levels_path)
        self.sizes = sorted(self.levels)
        if unknown := sorted(set(only) - set(self.sizes)):
            raise ValueError(f"{levels_path} has no level {unknown[0]} (it has {', '.join(map(str, self.sizes))})")
        base = self.sizes[-1]
        if only:
            self.probs = np.array([1.0 / len(set(only)) if k in only else 0.0 for k in self.sizes])
        else:
            self.probs = np.array([0.5 if k == base else 0.5 / (len(self.sizes) - 1) for k in self.sizes]) \
                if len(self.sizes) > 1 else np.ones(1)
        self.rng = np.random.default_rng(seed + 1)

    def draw(self) -> int:
        return int(self.sizes[self.rng.choice(len(self.sizes), p=self.probs)])

    def __call__(self, z: torch.Tensor, level: int | None = None):
        """(B, D, h, w) latent -> (zq, indices) at `level` (the base level if None)."""
        lvl = self.levels[self.sizes[-1] if level is None else level]
        b, d, h, w = z.shape
        idx = lvl.assign(z.float().permute(0, 2, 3, 1).reshape(-1, d).cpu()).view(b, h, w)
        zq = F.embedding(idx, lvl.codebook).permute(0, 3, 1, 2).to(z.device)
        return zq.contiguous(memory_format=torch.channels_last), idx


VAL_LOSS = 0.2  # validation also decodes each image with this share of its tokens lost at random


@torch.no_grad()
def validate(model: VQModel, images: list[np.ndarray], quantizer: LevelQuantizer | None = None,
             compute: Compute | None = None, lost_offset: torch.Tensor | None = None) -> dict:
    """PSNR, MS-SSIM, CIEDE2000 and codebook use of the decodes; and the PSNR with 20% of the
    tokens lost at random and filled by `neighbour` (the same positions at every validation).
    With `lost_offset` (a concealing decoder's mask weights) that PSNR is the concealing decode's,
    and the plain decoder's on the same fills is `val_psnr_0.2_plain`."""
    compute = compute or resolve("cpu")
    model.eval()
    psnrs, msssims, colour, lossy, plain = [], [], [], [], []
    used = torch.zeros(model.config.n_embed, dtype=torch.long)
    for rgb in images:
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
        h, w = x.shape[-2:]

        def to_8bit(y: torch.Tensor) -> torch.Tensor:  # the decode as a picture file holds it
            return torch.round(to_unit(y.float().cpu()[..., :h, :w]) * 255) / 255
        xp = pad_to_multiple(x, model.config.factor).to(compute.device).contiguous(memory_format=torch.channels_last)
        with compute.autocast():
            z = model.encode_latent(xp)
        if quantizer is None:
            zq, _, idx = model.quantize(z.float())
            codebook = model.quantize.embedding.weight
        else:
            zq, idx = quantizer(z)
            codebook = quantizer.levels[quantizer.sizes[-1]].codebook
        with compute.autocast():
            y = model.decode_code(zq)
        lost = torch.from_numpy(random_token_mask(idx.shape[1:], VAL_LOSS, len(lossy)))[None]
        filled, _ = neighbour_fill(zq.float(), lost.to(zq.device), codebook)
        filled = filled.contiguous(memory_format=torch.channels_last)
        with compute.autocast():
            y_lost = model.decode_code(filled)
        if lost_offset is not None:
            plain.append(psnr(to_unit(x), to_8bit(y_lost)).item())
            with compute.autocast():
                y_lost = decode_concealed(model, filled, lost.to(filled.device), lost_offset)
        lossy.append(psnr(to_unit(x), to_8bit(y_lost)).item())
        idx = idx.cpu()
        y = to_8bit(y)
        psnrs.append(psnr(to_unit(x), y).item())
        msssims.append(ms_ssim(to_unit(x), y).item())
        decoded = (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        colour.append(ciede2000(rgb, decoded))
        used += torch.bincount(idx.flatten(), minlength=model.config.n_embed)
    model.train()
    p = used.double() / used.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log2()).sum())
    extra = {f"val_psnr_{VAL_LOSS:g}_plain": float(np.mean(plain))} if plain else {}
    return {"val_psnr": float(np.mean(psnrs)), "val_ms_ssim": float(np.mean(msssims)),
            "val_ciede2000": float(np.mean(colour)), f"val_psnr_{VAL_LOSS:g}": float(np.mean(lossy)),
            **extra, "val_codes_used": int((used > 0).sum()), "val_entropy_bits": entropy}


class LostOffset(torch.nn.Module):
    """The mask channel's weights of a concealing decoder trained with its tokenizer: (z_channels,),
    added to the decoder's input where a token was lost. Trained as SCALE x a raw parameter: Adam
    moves a parameter by about the learning rate per step, and from zero this one has to reach the
    scale of the decoder's input within a fine-tune's steps at a fine-tune's learning rate."""

    SCALE = 50.0

    def __init__(self, channels: int):
        super().__init__()
        self.raw = torch.nn.Parameter(torch.zeros(channels))

    def forward(self) -> torch.Tensor:
        return self.raw * self.SCALE

    @torch.no_grad()
    def set(self, offset: torch.Tensor) -> None:
        self.raw.copy_(offset.to(self.raw) / self.SCALE)


def decode_concealed(model: VQModel, zq: torch.Tensor, lost: torch.Tensor, lost_offset: torch.Tensor) -> torch.Tensor:
    """The decode of codec/conceal.py's ConcealingDecoder built from `model` and `lost_offset`
    (its mask channel's weights), written on the tokenizer's own layers so that both train as one:
    (B, D, h, w) code vectors, (B, h, w) lost -> pixels."""
    h = model.post_quant_conv(zq)
    return model.decoder(h + lost_offset.to(h.dtype).view(1, -1, 1, 1) * lost[:, None].to(h.dtype))


def _training_state(model, optimizer, step, best, sampler, mask_rng, cfg, adversary=None,
                    offset: LostOffset | None = None) -> dict:
    extra = {} if adversary is None else {"discriminator": adversary[0].state_dict(),
                                          "discriminator_optimizer": adversary[1].state_dict()}
    if offset is not None:
        extra["lost_offset"] = offset().detach().cpu()
    return {**extra, "model": model.state_dict(), "ema_count": model.quantize.ema_count,
            "ema_sum": model.quantize.ema_sum, "unused_steps": model.quantize.unused_steps,
            "optimizer": optimizer.state_dict(), "step": step,
            "best_val_psnr": best, "sampler_rng": sampler.rng.bit_generator.state,
            "mask_rng": mask_rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(), "model_config": cfg.model.to_dict()}


def _model(cfg: TrainConfig, resumed: dict | None, log) -> VQModel:
    """A new model, the resumed run's, or one initialised from `cfg.init`."""
    if resumed is not None:
        cfg.model = TokenizerConfig.from_dict(resumed["model_config"])
    if resumed is None and cfg.init:
        from codec.checkpoint import load_tokenizer

        initial, _ = load_tokenizer(Path(cfg.init))
        cfg.model = replace(initial.config, restore_stats=initial.config.restore_stats or cfg.restore_stats)
    model = VQModel(cfg.model)
    if resumed is None and cfg.init:
        model.load_state_dict(initial.state_dict(), strict=False)
        model.quantize.initialised.fill_(True)
        model.quantize.ema_sum.copy_(model.quantize.embedding.weight.data)
        log(f"initialised from {cfg.init}")
    return model.to(memory_format=torch.channels_last)


def _load_model_state(state: dict, model: VQModel) -> None:
    model.load_state_dict(state["model"])
    model.quantize.ema_count.copy_(state["ema_count"])
    model.quantize.ema_sum.copy_(state["ema_sum"])
    model.quantize.unused_steps.copy_(state["unused_steps"])
    model.quantize.initialised.fill_(True)


def _resume(state: dict, optimizer, sampler: CropSampler, mask_rng: np.random.Generator) -> tuple[int, float]:
    """Put last.pt's optimizer and generators back; -> (step, best validation PSNR)."""
    optimizer.load_state_dict(state["optimizer"])
    sampler.rng.bit_generator.state = state["sampler_rng"]
    if "mask_rng" in state:  # runs from before loss-aware training have none
        mask_rng.bit_generator.state = state["mask_rng"]
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["best_val_psnr"]


def train(cfg: TrainConfig, log=print) -> Path:
    run = cfg.start(log)
    random.seed(cfg.seed)
    state = run.resumed
    model = _model(cfg, state, log)
    compute = run.compute
    dev = compute.device
    quantizer = None
    if cfg.decoder_only_levels:
        quantizer = LevelQuantizer(Path(cfg.decoder_only_levels), cfg.seed)
        for part in (model.encoder, model.quant_conv, model.quantize):
            part.requires_grad_(False)
        log(f"decoder fine-tuning: encoder and codebook frozen, levels {quantizer.sizes}")
    if cfg.train_only:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        for prefix in cfg.train_only:
            if not any(n.startswith(prefix) for n in names):
                raise TrainingSetupError(f"--train-only {prefix}: no trainable parameter starts so")
        for n, p in model.named_parameters():
            p.requires_grad_(p.requires_grad and n.startswith(tuple(cfg.train_only)))
        log(f"training only {', '.join(cfg.train_only)}")
    if state is not None:  # load before moving: last.pt's tensors are on the CPU
        _load_model_state(state, model)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    offset = None  # the concealing decoder's mask weights, for --conceal
    if cfg.conceal:
        if not cfg.loss_aware or quantizer is not None:
            raise TrainingSetupError("--conceal trains the concealing decoder under loss: it needs --loss-aware")
        offset = LostOffset(cfg.model.z_channels).to(dev)
        if state is not None and "lost_offset" in state:
            offset.set(state["lost_offset"])
        params.append(offset.raw)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    sampler = CropSampler(training_images(), cfg.crop, cfg.seed)
    val_images = [load_rgb(p) for p in validation_images()[: cfg.val_images]]
    mask_rng = np.random.default_rng(cfg.seed + 7)
    step, best = _resume(state, optimizer, sampler, mask_rng) if state is not None else (0, NO_BEST)
    if state is not None:
        log(f"resumed from {run.state_path} at step {step}")
    (run.out / "config.json").write_text(json.dumps(
        {**{k: v for k, v in vars(cfg).items() if k not in ("model", "disc")}, "model": cfg.model.to_dict(),
         "disc": vars(cfg.disc)}, indent=1))
    log(f"tokenizer: {count_parameters(model) / 1e6:.2f} M parameters, {len(sampler.images)} training images")
    model.train()
    hits = torch.zeros(cfg.model.n_embed)
    adversary = None  # (discriminator, its optimizer)
    if cfg.gan_weight > 0:
        last_layer = model.decoder.conv_out.weight
        if not last_layer.requires_grad:
            raise TrainingSetupError("--gan-weight: the decoder's last layer (decoder.conv_out) must train")
        disc = PatchDiscriminator(cfg.disc).to(dev, memory_format=torch.channels_last).train()
        adversary = (disc, torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9)))
        if state is not None and "discriminator" in state:
            disc.load_state_dict(state["discriminator"])
            adversary[1].load_state_dict(state["discriminator_optimizer"])
        log(f"adversarial term from step {cfg.gan_start}, weight {cfg.gan_weight}: PatchGAN "
            f"{count_parameters(disc) / 1e6:.2f} M parameters")
    counter = {"step": step}

    # torch 2.13 crashes (segmentation fault) in GroupNorm's backward on small channels_last
    # inputs that need no gradient while its weights do: with --train-only the model's input asks
    # for one, so that every normalisation's input does
    input_grad = bool(cfg.train_only)

    def train_step(lr: float) -> dict[str, float]:
        x = sampler.batch(cfg.batch).to(dev).contiguous(memory_format=torch.channels_last)
        y_lost = None
        if quantizer is None and cfg.loss_aware:
            x.requires_grad_(input_grad)
            with compute.autocast():
                z = model.encode_latent(x)
            zq, vq_loss, idx = model.quantize(z)
            lost = torch.from_numpy(np.stack([
                draw_mask(mask_rng, *idx.shape[1:], float(mask_rng.uniform(0.02, cfg.loss_aware_max)),
                          cfg.loss_aware_pattern)
                for _ in range(len(idx))])).to(dev)
            filled, _ = neighbour_fill(zq, lost, model.quantize.embedding.weight)
            both = torch.cat([zq, filled]).contiguous(memory_format=torch.channels_last)
            with compute.autocast():
                if offset is None:
                    y, y_lost = model.decode_code(both).chunk(2)
                else:  # the coded half is told nothing is lost: the plain decode
                    y, y_lost = decode_concealed(model, both, torch.cat([torch.zeros_like(lost), lost]),
                                                 offset()).chunk(2)
        elif quantizer is None:
            x.requires_grad_(input_grad)
            with compute.autocast():
                y, vq_loss, idx = model(x)
        else:
            with torch.no_grad(), compute.autocast():
                z = model.encode_latent(x)
            level = quantizer.draw()
            zq, idx = quantizer(z, level)
            zq.requires_grad_(input_grad)
            with compute.autocast():
                y = model.decode_code(zq)
            vq_loss = torch.zeros((), device=dev)
            if level != quantizer.sizes[-1]:
                idx = idx[:0]  # codebook usage is reported for the base level only
        y = y.float()
        l1 = (y - x).abs().mean()
        s = ssim(to_unit(y), to_unit(x)).mean()
        loss = l1 + cfg.ssim_weight * (1 - s) + vq_loss
        if cfg.l2_weight:
            loss = loss + cfg.l2_weight * (y - x).pow(2).mean()
        extra = {}
        if y_lost is not None:
            y_lost = y_lost.float()
            lossy = (y_lost - x).abs().mean() + cfg.ssim_weight * (1 - ssim(to_unit(y_lost), to_unit(x)).mean()) \
                + cfg.l2_weight * (y_lost - x).pow(2).mean()
            loss = loss + cfg.loss_aware * lossy
            extra["lossy"] = lossy.item()
        chroma = chroma_l1(y, x)
        if cfg.chroma_weight:
            loss = loss + cfg.chroma_weight * chroma
        adversarial = adversary is not None and counter["step"] >= cfg.gan_start
        if adversarial:
            disc = adversary[0]
            disc.requires_grad_(False)
            with compute.autocast():
                g_loss = generator_loss(disc(y).float())
            weight = cfg.gan_weight * adaptive_weight(loss - vq_loss, g_loss, last_layer)
            loss = loss + weight * g_loss
            extra.update(g_loss=g_loss.item(), gan_weight=weight.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if adversary is not None:
            disc, disc_optimizer = adversary
            disc.requires_grad_(True)
            for group in disc_optimizer.param_groups:
                group["lr"] = lr
            with compute.autocast():
                real, fake = disc(x.detach()).float(), disc(y.detach()).float()
            d_loss = hinge_discriminator_loss(real, fake)
            disc_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            disc_optimizer.step()
            extra.update(d_loss=d_loss.item(), logits_real=real.mean().item(), logits_fake=fake.mean().item())
        counter["step"] += 1
        hits.add_(torch.bincount(idx.flatten().cpu(), minlength=cfg.model.n_embed))
        return {"loss": loss.item(), "l1": l1.item(), "ssim": s.item(), "chroma": chroma.item(),
                "vq": vq_loss.item(), **extra}

    def perplexity() -> dict:
        p = hits / hits.sum()
        value = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
        hits.zero_()
        return {"perplexity": value}

    def save_best(rec: dict) -> None:
        save_tokenizer(model, run.out / "best.safetensors",
                       {"step": rec["step"], "val_psnr": rec["val_psnr"], "val_ms_ssim": rec["val_ms_ssim"],
                        "val_ciede2000": rec["val_ciede2000"]})
        if offset is not None:
            concealer = ConcealingDecoder.from_tokenizer(model, offset()).cpu()
            save_concealer(concealer, run.out / "best-conceal.safetensors",
                           file_checksum(run.out / "best.safetensors"),
                           {"step": rec["step"], f"val_psnr_{VAL_LOSS:g}": rec[f"val_psnr_{VAL_LOSS:g}"],
                            "trained": "jointly with the tokenizer (train tokenizer --loss-aware --conceal)"})

    return run.loop(optimizer, cfg.schedule, step, best, train_step,
                    validate=lambda: validate(model, val_images, quantizer, compute,
                                                      None if offset is None else offset().detach()),
                    score=lambda rec: {"psnr": rec["val_psnr"], "ciede2000": -rec["val_ciede2000"],
                                       "lossy": (rec["val_psnr"] + rec[f"val_psnr_{VAL_LOSS:g}"]) / 2,
                                       "last": rec["step"]}[cfg.best_by],
                    save_best=save_best,
                    snapshot=lambda step, best: _training_state(model, optimizer, step, best, sampler, mask_rng, cfg,
                                                                adversary, offset),
                    val_every=cfg.val_every, window_extra=perplexity)
