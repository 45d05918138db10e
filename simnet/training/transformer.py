"""Resumable training of the masked transformer on cached token grids, on the CPU or CUDA
(codec.hardware picks the device and precision; the loop is simnet/training/loop.py's).

The grids come from the caller (`simnet train recovery` encodes the training split once with the
tokenizer and caches them), so this module needs no codec beyond its token types. Masks are drawn
the way losses happen: a loss ratio from MaskGIT's cosine distribution, applied as scattered
tokens (what interleaved packets lose), as contiguous raster runs (packets without interleaving),
or as rectangles.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codec.hardware import Compute, resolve
from codec.tokens import draw_mask
from simnet.training.loop import NO_BEST, RunConfig

from recovery.transformer import MaskedTokenTransformer, TransformerConfig, count_parameters
from recovery.transformer_recovery import save_transformer


@dataclass
class RecoveryTrainConfig(RunConfig):
    out: str = "runs/recovery"
    batch: int = 32
    # weight of the squared distance between the predicted distribution's mean code vector and the
    # true code (code-vector models only): the receiver decodes that mean's nearest code (MMSE),
    # so training asks for a good mean, not only for a good top guess
    vector_weight: float = 2.0
    model: TransformerConfig = field(default_factory=TransformerConfig)


class GridSampler:
    """Random crops of token grids at random levels, with random masks; with `previous` (each
    grid's previous frame in a stream, aligned with `grids`), the same crop of that frame too."""

    def __init__(self, grids: dict[int, list[np.ndarray]], crop: int, seed: int,
                 previous: dict[int, list[np.ndarray]] | None = None):
        self.levels = sorted(grids)
        keep = {k: [i for i, g in enumerate(v) if min(g.shape) >= crop] for k, v in grids.items()}
        self.grids = {k: [v[i] for i in keep[k]] for k, v in grids.items()}
        self.previous = None if previous is None else {k: [previous[k][i] for i in keep[k]] for k in grids}
        if not all(self.grids.values()):
            raise ValueError(f"every level needs grids of at least {crop}x{crop} tokens")
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        # larger codebooks are harder to predict: they get batches in proportion to log2(K)
        bits = np.log2(np.array(self.levels, dtype=float))
        self.level_probs = bits / bits.sum()

    def batch(self, n: int, level: int | None = None):
        if level is None:
            level = self.levels[self.rng.choice(len(self.levels), p=self.level_probs)]
        pool = self.grids[level]
        c = self.crop
        tokens = np.empty((n, c, c), dtype=np.int64)
        masks = np.empty((n, c, c), dtype=bool)
        previous = np.empty((n, c, c), dtype=np.int64) if self.previous is not None else None
        for i in range(n):
            j = self.rng.integers(len(pool))
            g = pool[j]
            y = self.rng.integers(0, g.shape[0] - c + 1)
            x = self.rng.integers(0, g.shape[1] - c + 1)
            tokens[i] = g[y:y + c, x:x + c]
            masks[i] = draw_mask(self.rng, c, c)
            if previous is not None:
                previous[i] = self.previous[level][j][y:y + c, x:x + c]
        return (level, torch.from_numpy(tokens), torch.from_numpy(masks),
                None if previous is None else torch.from_numpy(previous))

    def offset(self, max_side: int) -> tuple[int, int]:
        """A random place for the crop in the position tables."""
        oy, ox = self.rng.integers(0, max_side - self.crop + 1, size=2)
        return int(oy), int(ox)


def expected_vector_error(model: MaskedTokenTransformer, logits: torch.Tensor, targets: torch.Tensor,
                          level: int) -> torch.Tensor:
    """Per token: squared distance between the mean code vector under softmax(logits) (N, K) and
    the true code's vector, in the model's normalised code space."""
    offset = model.config.level_offsets[level]
    codes = model.codes[offset: offset + level]
    return (torch.softmax(logits.float(), -1) @ codes - codes[targets]).pow(2).sum(1)


def validation_score(rec: dict) -> float:
    """Higher is better: minus the mean expected-vector error (what the MMSE decision pays) when
    the model has code vectors, else the mean top-1 accuracy."""
    errors = [v for k, v in rec.items() if k.startswith("val_mean_code_sqerr")]
    if errors:
        return -float(np.mean(errors))
    return float(np.mean([v for k, v in rec.items() if k.startswith("val_acc")]))


def validation_masks(grids: dict[int, list[np.ndarray]], ratio: float = 0.2,
                     seed: int = 1234) -> dict[int, list[np.ndarray]]:
    """The lost positions validation uses: `ratio` of each grid's tokens at random, the same
    masks for every validation of a run and for the baseline it is compared with."""
    rng = np.random.default_rng(seed)
    masks = {}
    for level, pool in sorted(grids.items()):
        masks[level] = []
        for g in pool:
            mask = np.zeros(g.size, dtype=bool)
            mask[rng.choice(g.size, size=max(1, round(ratio * g.size)), replace=False)] = True
            masks[level].append(mask.reshape(g.shape))
    return masks


@torch.no_grad()
def validate(model: MaskedTokenTransformer, grids: dict[int, list[np.ndarray]], ratio: float = 0.2,
             seed: int = 1234, compute: Compute | None = None,
             previous: dict[int, list[np.ndarray]] | None = None) -> dict:
    """Top-1 accuracy on lost tokens, whole validation grids, `ratio` of tokens lost at random
    (one-shot prediction); with `previous`, each grid's previous frame is the model's too."""
    compute = compute or resolve("cpu")
    model.eval()
    masks = validation_masks(grids, ratio, seed)
    out = {}
    for level, pool in sorted(grids.items()):
        hits = total = 0
        nll = sq = 0.0
        for n, (g, m) in enumerate(zip(pool, masks[level])):
            mask = torch.from_numpy(m)[None].to(compute.device)
            idx = torch.from_numpy(g)[None].to(compute.device)
            prev = None if previous is None else torch.from_numpy(previous[level][n])[None].to(compute.device)
            with compute.autocast():
                logits = model(idx, mask, level, at=mask, previous=prev).float()
            hits += int((logits.argmax(-1) == idx[mask]).sum())
            nll += float(F.cross_entropy(logits, idx[mask], reduction="sum"))
            if model.config.code_dim:
                sq += float(expected_vector_error(model, logits, idx[mask], level).sum())
            total += int(mask.sum())
        out[f"val_acc_{level}"] = hits / total
        out[f"val_nll_{level}"] = nll / total
        if model.config.code_dim:
            out[f"val_mean_code_sqerr_{level}"] = sq / total
    model.train()
    return out


def neighbour_reference(grids: dict[int, list[np.ndarray]], codebooks: dict[int, torch.Tensor],
                        ratio: float = 0.2, seed: int = 1234,
                        previous: dict[int, list[np.ndarray]] | None = None) -> dict:
    """What `neighbour` scores on validate()'s masks: top-1 accuracy and the squared distance of
    its code to the true one in the transformer's normalised code space. A run logs it once, so
    its curve can be read against the baseline it has to beat."""
    from codec.tokens import LossyTokenGrid, TokenGrid

    from recovery.baselines import NeighbourRecovery

    masks = validation_masks(grids, ratio, seed)
    out = {}
    for level, pool in sorted(grids.items()):
        codebook = codebooks[level].float()
        codes = MaskedTokenTransformer.normalise_codebook(codebook)
        hits = total = 0
        sq = 0.0
        for n, (g, mask) in enumerate(zip(pool, masks[level])):
            # the image size is nominal: recoveries read only the grid and the mask
            lossy = LossyTokenGrid(TokenGrid(g, level, (16 * g.shape[0], 16 * g.shape[1])), mask)
            # with a stream's previous frames, the reference is `previous` (the co-located token)
            filled = (NeighbourRecovery().recover(lossy, codebook) if previous is None
                      else np.where(mask, previous[level][n], g))
            hits += int((filled[mask] == g[mask]).sum())
            sq += float((codes[torch.from_numpy(filled[mask])] - codes[torch.from_numpy(g[mask])]).pow(2).sum())
            total += int(mask.sum())
        name = "neighbour" if previous is None else "previous"
        out[f"ref_{name}_acc_{level}"] = hits / total
        out[f"ref_{name}_mean_code_sqerr_{level}"] = sq / total
    return out


def _model(cfg: RecoveryTrainConfig, resumed: dict | None, levels: tuple[int, ...], log
           ) -> MaskedTokenTransformer:
    """A new model, the resumed run's, or one initialised from `cfg.init`."""
    if resumed is not None:
        cfg.model = TransformerConfig.from_dict(resumed["model_config"])
    if resumed is None and cfg.init:
        from recovery.transformer_recovery import load_transformer

        initial, _, _ = load_transformer(Path(cfg.init))
        # the initial model's shape, plus the local features if this run asks for them
        cfg.model = replace(initial.config, local_features=initial.config.local_features or cfg.model.local_features,
                            temporal=initial.config.temporal or cfg.model.temporal)
    cfg.model.levels = levels
    model = MaskedTokenTransformer(cfg.model)
    if resumed is None and cfg.init:
        missing_keys, _ = model.load_state_dict(initial.state_dict(), strict=False)
        if missing_keys:
            log(f"new (randomly initialised) weights: {missing_keys}")
        log(f"initialised from {cfg.init}")
    return model


def _resume(state: dict, optimizer, sampler: GridSampler) -> tuple[int, float]:
    """Put last.pt's optimizer and generators back; -> (step, best validation score)."""
    optimizer.load_state_dict(state["optimizer"])
    sampler.rng.bit_generator.state = state["sampler_rng"]
    torch.set_rng_state(state["torch_rng"])
    # a best saved under an older criterion is not comparable
    best = state["best"] if state.get("best_criterion") == "validation_score/1" else NO_BEST
    return state["step"], best


def train(cfg: RecoveryTrainConfig, grids: dict[int, list[np.ndarray]],
          val_grids: dict[int, list[np.ndarray]], log=print, extra_info: dict | None = None,
          codebooks: dict[int, torch.Tensor] | None = None,
          previous: tuple[dict, dict] | None = None) -> Path:
    """`codebooks` {level: (K, D)} are needed when the model config has code_dim > 0.
    `previous`: the previous frame of each training and each validation grid (a temporal model)."""
    run = cfg.start(log)
    state = run.resumed
    model = _model(cfg, state, tuple(sorted(grids)), log)
    if cfg.model.code_dim:  # after --init: the codec being trained for, not the initial one's
        if codebooks is None:
            raise ValueError("a transformer with code_dim > 0 needs the codec's codebooks")
        model.set_codebooks(codebooks)
    compute, dev = run.compute, run.compute.device
    if state is not None:  # load before moving: last.pt's tensors are on the CPU
        model.load_state_dict(state["model"])
    model.to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.05)
    train_prev, val_prev = previous if previous is not None else (None, None)
    sampler = GridSampler(grids, cfg.crop, cfg.seed, train_prev)
    step, best = _resume(state, optimizer, sampler) if state is not None else (0, NO_BEST)
    if state is not None:
        log(f"resumed from {run.state_path} at step {step}")
    log(f"transformer: {count_parameters(model) / 1e6:.2f} M parameters, levels {list(cfg.model.levels)}, "
        f"{sum(len(v) for v in sampler.grids.values())} training grids")
    if codebooks is not None:
        run.record({"step": step, **neighbour_reference(val_grids, codebooks, previous=val_prev)}, flush=False)
    model.train()

    def train_step(lr: float) -> dict[str, float]:
        level, tokens, masks, prev = sampler.batch(cfg.batch)
        tokens, masks = tokens.to(dev), masks.to(dev)
        prev = prev.to(dev) if prev is not None else None
        offset = sampler.offset(cfg.model.max_side)
        with compute.autocast():
            lost_logits = model(tokens, masks, level, offset, at=masks, previous=prev).float()
        targets = tokens[masks]
        loss = F.cross_entropy(lost_logits, targets)
        if cfg.model.code_dim and cfg.vector_weight:
            loss = loss + cfg.vector_weight * expected_vector_error(model, lost_logits, targets, level).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item()}

    def snapshot(step: int, best: float) -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "best": best, "best_criterion": "validation_score/1",
                "sampler_rng": sampler.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "model_config": cfg.model.to_dict()}

    return run.loop(optimizer, cfg.schedule, step, best, train_step,
                    validate=lambda: validate(model, val_grids, compute=compute, previous=val_prev),
                    score=validation_score,
                    save_best=lambda rec: save_transformer(model, run.out / "best.safetensors",
                                                           {**(extra_info or {}), "crop": cfg.crop, **rec}),
                    snapshot=snapshot, val_every=cfg.val_every)
