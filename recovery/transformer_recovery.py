"""The `transformer` recovery: the masked transformer behind the recovery interface, with one-shot
and iterative (MaskGIT) decoding."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from codec.tokens import LossyTokenGrid

from .base import RecoveryError, check_inputs, nearest_codes
from .transformer import MaskedTokenTransformer, TransformerConfig

WEIGHTS = Path(__file__).resolve().parent / "weights" / "transformer.safetensors"
WEIGHTS_ENV = "SIMNET_TRANSFORMER_WEIGHTS"  # a run's best.safetensors instead of the shipped file


def default_weights() -> Path:
    return Path(os.environ[WEIGHTS_ENV]) if os.environ.get(WEIGHTS_ENV) else WEIGHTS


def save_transformer(model: MaskedTokenTransformer, path: Path, info: dict | None = None) -> None:
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "simnet-recovery-transformer/1", "config": json.dumps(model.config.to_dict()),
            "info": json.dumps(info or {})}
    tmp = Path(path).with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def load_transformer(path: Path) -> tuple[MaskedTokenTransformer, dict, str]:
    """-> (model in eval mode, info, sha256 of the file)."""
    path = Path(path)
    if not path.is_file():
        raise RecoveryError(f"{path}: no transformer weights (train them with `simnet train recovery`)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
        if meta.get("format") != "simnet-recovery-transformer/1":
            raise ValueError(f"metadata format {meta.get('format')!r}")
        cfg = TransformerConfig.from_dict(json.loads(meta["config"]))
    except Exception as e:  # safetensors, json and our own checks each raise their own type
        raise RecoveryError(f"{path}: not simnet transformer weights ({e})") from None
    model = MaskedTokenTransformer(cfg)
    expected = model.state_dict()
    for key, ref in expected.items():
        if key not in state or tuple(state[key].shape) != tuple(ref.shape):
            raise RecoveryError(f"{path}: weight '{key}' is missing or has the wrong shape")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return model.eval(), json.loads(meta.get("info", "{}")), digest


DECISIONS = ("argmax", "mmse")
# One-shot: on BSDS500 val (12 images, K=1024, 20% and 40% of tokens lost) 2, 4 and 8 MaskGIT
# steps gave the same PSNR as one step within 0.02 dB, at up to 8x the time (reports in
# docs/models.md); iterative decoding stays available as transformer:STEPS.
DEFAULT_STEPS = 1


def mmse_codes(probs: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The code with the least expected squared distance to the true code under `probs` (..., K).

    sum_k p_k |c_j - c_k|^2 = |c_j|^2 - 2 c_j . E[c] + const, so it is the code nearest to the
    posterior mean vector E[c]. When the model hesitates between similar codes it picks their
    middle, which the decoder turns into less error than a confident wrong guess."""
    return nearest_codes(probs @ codebook.float(), codebook)


class TransformerRecovery:
    name = "transformer"

    def __init__(self, model: MaskedTokenTransformer, steps: int = DEFAULT_STEPS, temperature: float = 0.0,
                 seed: int = 0, precision: str = "bf16", checksum: str | None = None,
                 decision: str = "mmse"):
        if steps < 1:
            raise RecoveryError(f"decoding steps must be >= 1, got {steps}")
        if decision not in DECISIONS:
            raise RecoveryError(f"decision {decision!r}: expected one of {list(DECISIONS)}")
        self.model = model.eval()
        self.steps, self.temperature, self.seed = steps, temperature, seed
        self.decision = decision
        self.precision = precision
        self.checksum = checksum

    @classmethod
    def from_weights(cls, weights: Path | None = None, **kwargs) -> "TransformerRecovery":
        model, _, digest = load_transformer(Path(weights) if weights else default_weights())
        return cls(model, checksum=digest, **kwargs)

    def _logits(self, idx: torch.Tensor, missing: torch.Tensor, level: int) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.model(idx, missing, level).float()

    def recover(self, lossy: LossyTokenGrid, codebook: torch.Tensor) -> np.ndarray:
        check_inputs(lossy, codebook)
        level = lossy.grid.level
        if level not in self.model.config.levels:
            raise RecoveryError(f"the transformer was trained for levels {list(self.model.config.levels)}, "
                                f"not {level}")
        if not self.model.codebook_matches(level, codebook):
            raise RecoveryError(f"the transformer was trained with another codebook at level {level} "
                                "(its weights belong to a different codec)")
        side = self.model.config.max_side
        if max(lossy.grid.shape) > side:
            raise RecoveryError(f"grid {lossy.grid.shape} exceeds the transformer's {side}x{side} tokens")
        out = lossy.grid.indices.copy()
        missing = lossy.missing
        if not missing.any():
            return out
        idx = torch.from_numpy(np.where(missing, 0, out))[None]
        miss = torch.from_numpy(missing.copy())[None]  # its own memory: the loop clears it
        total = int(miss.sum())
        generator = torch.Generator().manual_seed(self.seed)
        for step in range(self.steps):
            logits = self._logits(idx, miss, level)[0]
            if self.temperature > 0:
                probs = torch.softmax(logits / self.temperature, dim=-1)
                pred = torch.multinomial(probs.view(-1, level), 1, generator=generator).view(probs.shape[:2])
            else:
                probs = torch.softmax(logits, dim=-1)
                pred = probs.argmax(-1)
            # the fill order follows the model's confidence in its most likely code
            confidence = probs.gather(-1, pred[..., None])[..., 0]
            if self.decision == "mmse" and self.temperature == 0:
                pred = mmse_codes(probs, codebook)
            confidence = torch.where(miss[0], confidence, torch.tensor(-1.0))
            still = int(miss.sum())
            # cosine schedule: after step t, total * cos(pi/2 * t/T) positions stay masked
            keep_masked = math.floor(total * math.cos(math.pi / 2 * (step + 1) / self.steps))
            n_fill = max(1, still - keep_masked) if step < self.steps - 1 else still
            fill = torch.topk(confidence.flatten(), n_fill).indices
            flat_idx, flat_miss = idx[0].flatten(), miss[0].flatten()
            flat_idx[fill] = pred.flatten()[fill]
            flat_miss[fill] = False
            idx, miss = flat_idx.view(1, *idx.shape[1:]), flat_miss.view(1, *miss.shape[1:])
            if not miss.any():
                break
        result = idx[0].numpy()
        out[missing] = result[missing]
        return out
