"""The `transformer` recovery: the masked transformer behind the recovery interface, with one-shot
and iterative (MaskGIT) decoding."""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import torch

from codec.hardware import resolve
from codec.safe_weights import check_state, file_checksum, read_weights, save_weights
from codec.tokens import MAX_TRAIN_RATIO, FrameHistory, LossyTokenGrid, nearest_codes, nearest_in_cells

from .base import RecoveryError, check_inputs
from .baselines import PreviousRecovery
from .transformer import MaskedTokenTransformer, TransformerConfig

WEIGHTS = Path(__file__).resolve().parent / "weights" / "transformer.safetensors"
WEIGHTS_ENV = "SIMNET_TRANSFORMER_WEIGHTS"  # a run's best.safetensors instead of the shipped file
# the spatio-temporal model (`temporal`): trained on token streams of clips, split by clip
TEMPORAL_WEIGHTS = WEIGHTS.with_name("transformer-video.safetensors")
TEMPORAL_WEIGHTS_ENV = "SIMNET_TEMPORAL_WEIGHTS"


def default_weights() -> Path:
    return Path(os.environ[WEIGHTS_ENV]) if os.environ.get(WEIGHTS_ENV) else WEIGHTS


def default_temporal_weights() -> Path:
    return Path(os.environ[TEMPORAL_WEIGHTS_ENV]) if os.environ.get(TEMPORAL_WEIGHTS_ENV) else TEMPORAL_WEIGHTS


FORMAT = "simnet-recovery-transformer/1"


def save_transformer(model: MaskedTokenTransformer, path: Path, info: dict | None = None) -> None:
    save_weights(model.state_dict(), path, FORMAT, model.config.to_dict(), info)


def load_transformer(path: Path) -> tuple[MaskedTokenTransformer, dict, str]:
    """-> (model in eval mode, info, sha256 of the file)."""
    state, config, info = read_weights(path, FORMAT, RecoveryError,
                                       missing="no transformer weights (train them with `simnet train recovery`)")
    try:
        cfg = TransformerConfig.from_dict(config)
    except (KeyError, ValueError, TypeError) as e:
        raise RecoveryError(f"{path}: bad transformer config in metadata ({e})") from None
    model = MaskedTokenTransformer(cfg)
    check_state(model.state_dict(), state, str(path), RecoveryError)
    model.load_state_dict(state)
    return model.eval(), info, file_checksum(path)


DECISIONS = ("argmax", "mmse", "sample")  # sample: draw each code from softmax(logits / temperature)
# One-shot: more MaskGIT steps measured no better, at up to 8x the time (docs/models.md);
# iterative decoding stays available as transformer:STEPS.
DEFAULT_STEPS = 1
# The model attends within windows of its training crop (16 x 16 tokens), not across the whole
# grid, which it never saw in training: better recovery at a fraction of the attention cost, and
# windows held in place across iterative steps (both measured in docs/models.md).
DEFAULT_WINDOW = 16


def window_starts(n: int, window: int) -> list[int]:
    """Starts of windows of `window` tokens tiling a side of `n` tokens; the last one is moved
    inside the edge (overlapping its neighbour) rather than cut short."""
    return sorted({min(o, max(n - window, 0)) for o in range(0, n, window)})


def mmse_codes(probs: torch.Tensor, codebook: torch.Tensor, cells: torch.Tensor | None = None,
               of_code: torch.Tensor | None = None) -> torch.Tensor:
    """The code with the least expected squared distance to the true code under `probs` (N, K).

    sum_k p_k |c_j - c_k|^2 = |c_j|^2 - 2 c_j . E[c] + const, so it is the code nearest to the
    posterior mean vector E[c]. When the model hesitates between similar codes it picks their
    middle, which the decoder turns into less error than a confident wrong guess. With `cells`
    (N,) and `of_code` (K,), each row's choice stays inside its cell (-1: any code)."""
    mean = probs @ codebook.float()
    out = nearest_codes(mean, codebook)
    if cells is not None:
        known = cells >= 0
        if known.any():
            out[known] = nearest_in_cells(mean[known], cells[known], of_code, codebook)
    return out


def restrict_to_cells(probs: torch.Tensor, cells: torch.Tensor, of_code: torch.Tensor) -> torch.Tensor:
    """The posterior (N, K) conditioned on each row's known cell (N,; -1: unknown, unchanged)."""
    inside = (of_code[None, :] == cells[:, None]) | (cells[:, None] < 0)
    kept = probs * inside
    return kept / kept.sum(-1, keepdim=True).clamp_min(1e-30)


def bf16_matrices(model: MaskedTokenTransformer) -> MaskedTokenTransformer:
    """A copy of `model` whose linear layers hold bf16 weights, for use under bf16 autocast."""
    fast = copy.deepcopy(model)
    for module in fast.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)
    return fast.eval()


class TransformerRecovery:
    name = "transformer"
    conceal = False

    def __init__(self, model: MaskedTokenTransformer, steps: int = DEFAULT_STEPS, temperature: float = 0.0,
                 seed: int = 0, precision: str = "auto", checksum: str | None = None,
                 decision: str = "mmse", window: int | None = DEFAULT_WINDOW, device: str = "auto"):
        """`precision` and `device` as in codec.hardware.resolve (auto: bf16 only where native).
        A temporal model (its config says so) also reads the stream's previous frame."""
        if steps < 1:
            raise RecoveryError(f"decoding steps must be >= 1, got {steps}")
        if decision not in DECISIONS:
            raise RecoveryError(f"decision {decision!r}: expected one of {list(DECISIONS)}")
        if decision == "sample" and temperature <= 0:
            temperature = 1.0
        if decision != "sample" and temperature > 0:
            decision = "sample"
        self.model = model.eval()
        self.steps, self.temperature, self.seed = steps, temperature, seed
        self.decision = decision
        if window is not None and window < 1:
            raise RecoveryError(f"attention window must be >= 1 token, got {window}")
        self.window = window  # None: attend across the whole grid
        self.compute = resolve(device, precision)
        self.precision, self.device = self.compute.precision, self.compute.device
        self.checksum = checksum
        # autocast would cast every weight to bf16 again on every call (measured: the largest
        # single cost of a step); a copy that holds the matrices in bf16 gives the same numbers
        net = bf16_matrices(self.model) if self.precision == "bf16" else self.model
        self.net = net if self.device == "cpu" else copy.deepcopy(net).to(self.device)

    @classmethod
    def from_weights(cls, weights: Path | None = None, **kwargs) -> "TransformerRecovery":
        model, info, digest = load_transformer(Path(weights) if weights else default_weights())
        kwargs.setdefault("window", int(info.get("crop", DEFAULT_WINDOW)))
        return cls(model, checksum=digest, **kwargs)

    def _logits(self, idx: torch.Tensor, missing: torch.Tensor, level: int,
                previous: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """idx, missing (h, w) -> logits (N, K) for the N missing positions and their flat grid
        positions (N,). With a window, each position is predicted in the window where it lies
        most centrally; all windows have one shape and go through the model as one batch."""
        h, w = idx.shape
        if self.window is None:
            origins, (wh, ww) = [(0, 0)], (h, w)
        else:
            wh, ww = min(self.window, h), min(self.window, w)
            origins = [(y, x) for y in window_starts(h, self.window) for x in window_starts(w, self.window)]
        yy, xx = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
        from_centre = (yy - (wh - 1) / 2) ** 2 + (xx - (ww - 1) / 2) ** 2
        owner = torch.full((h, w), -1)
        nearest = torch.full((h, w), math.inf)
        for j, (y, x) in enumerate(origins):
            closer = from_centre < nearest[y:y + wh, x:x + ww]
            nearest[y:y + wh, x:x + ww][closer] = from_centre[closer]
            owner[y:y + wh, x:x + ww][closer] = j

        def cut(grid: torch.Tensor) -> torch.Tensor:
            return torch.stack([grid[y:y + wh, x:x + ww] for y, x in origins])

        tiles_idx, tiles_miss = cut(idx), cut(missing)
        at = tiles_miss & (cut(owner) == torch.arange(len(origins))[:, None, None])
        positions = cut(torch.arange(h * w).view(h, w))[at]
        dev = self.device
        prev = cut(previous).to(dev) if previous is not None else None
        with torch.no_grad(), self.compute.autocast():
            logits = self.net(tiles_idx.to(dev), tiles_miss.to(dev), level, at=at.to(dev), previous=prev).float().cpu()
        return logits, positions

    def check_codebook(self, level: int, codebook: torch.Tensor) -> None:
        """Refuse a level or a codebook the model was not trained with (another codec's indices
        mean other pictures)."""
        if level not in self.model.config.levels:
            raise RecoveryError(f"the transformer was trained for levels {list(self.model.config.levels)}, "
                                f"not {level}")
        if not self.model.codebook_matches(level, codebook):
            raise RecoveryError(f"the transformer was trained with another codebook at level {level} "
                                "(its weights belong to a different codec)")

    def recover(self, lossy: LossyTokenGrid, codebook: torch.Tensor,
                history: FrameHistory | None = None) -> np.ndarray:
        check_inputs(lossy, codebook)
        level = lossy.grid.level
        self.check_codebook(level, codebook)
        side = self.model.config.max_side
        if max(lossy.grid.shape) > side:
            raise RecoveryError(f"grid {lossy.grid.shape} exceeds the transformer's {side}x{side} tokens")
        out = lossy.grid.indices.copy()
        missing = lossy.missing
        if not missing.any():
            return out
        idx = torch.from_numpy(np.where(missing, 0, out))
        miss = torch.from_numpy(missing.copy())  # its own memory: the loop clears it
        flat_idx, flat_miss = idx.view(-1), miss.view(-1)
        total = int(miss.sum())
        generator = torch.Generator().manual_seed(self.seed)
        # a lost token whose coarse cell arrived is one of that cell's codes: the posterior is
        # conditioned on it before any decision
        cells = torch.from_numpy(lossy.cells.indices).view(-1) if lossy.cells is not None else None
        of_code = torch.from_numpy(lossy.cells.of_code) if lossy.cells is not None else None
        previous = None
        prior = history.previous if history is not None else None
        if self.model.config.temporal:
            usable = prior is not None and prior.shape == lossy.grid.shape and prior.level == level
            if not usable or missing.mean() > MAX_TRAIN_RATIO:
                # outside what it was trained on, `previous` does better, and falls back to
                # `neighbour` itself where there is no previous frame. A stream's first frame: the
                # model's spatial part, trained only beside a previous frame, filled akiyo's frame 0
                # at 20% loss at 15.11 dB against neighbour's 16.79, and a P-frame keeps that fill
                # until the refresh. More lost than training ever masked (a whole frame, usually):
                # its guesses were worse than copying (carphone at 40% loss, frames wholly lost:
                # 14.5-17 dB against `previous`'s 17.6-18.9)
                return PreviousRecovery().recover(lossy, codebook, history)
            previous = torch.from_numpy(prior.indices)
        for step in range(self.steps):
            logits, still = self._logits(idx, miss, level, previous)
            probs = torch.softmax(logits / (self.temperature or 1.0), dim=-1)
            known = cells[still] if cells is not None else None
            if known is not None:
                probs = restrict_to_cells(probs, known, of_code)
            if self.temperature > 0:
                pred = torch.multinomial(probs, 1, generator=generator)[:, 0]
            else:
                pred = probs.argmax(-1)
            # the fill order follows the model's confidence in its most likely code
            confidence = probs.gather(-1, pred[:, None])[:, 0]
            if self.decision == "mmse" and self.temperature == 0:
                pred = mmse_codes(probs, codebook, known, of_code)
            # cosine schedule: after step t, total * cos(pi/2 * t/T) positions stay masked
            keep_masked = math.floor(total * math.cos(math.pi / 2 * (step + 1) / self.steps))
            n_fill = max(1, len(still) - keep_masked) if step < self.steps - 1 else len(still)
            chosen = torch.topk(confidence, n_fill).indices
            flat_idx[still[chosen]] = pred[chosen]
            flat_miss[still[chosen]] = False
            if not flat_miss.any():
                break
        out[missing] = idx.numpy()[missing]
        return out


def transformer_options(spec: str, opts: list[str]) -> dict:
    """The transformer's options: STEPS[:DECISION[:WINDOW]] (parse_method)."""
    if len(opts) > 3:
        raise RecoveryError(f"{spec!r}: expected transformer:STEPS[:DECISION[:WINDOW]]")
    kwargs: dict = {}
    try:
        kwargs["steps"] = int(opts[0])
    except ValueError:
        raise RecoveryError(f"{spec!r}: decoding steps must be an integer, got {opts[0]!r}") from None
    if kwargs["steps"] < 1:
        raise RecoveryError(f"{spec!r}: decoding steps must be >= 1")
    if len(opts) >= 2:
        decision, _, temperature = opts[1].partition("@")
        if decision not in DECISIONS or (temperature and decision != "sample"):
            raise RecoveryError(f"{spec!r}: decision must be one of {list(DECISIONS)} (sample@T: at temperature T)")
        kwargs["decision"] = decision
        if temperature:
            try:
                kwargs["temperature"] = float(temperature)
            except ValueError:
                raise RecoveryError(f"{spec!r}: temperature must be a number, got {temperature!r}") from None
            if not 0 < kwargs["temperature"] <= 10:
                raise RecoveryError(f"{spec!r}: temperature must be in (0, 10]")
    if len(opts) == 3:
        if opts[2] == "grid":
            kwargs["window"] = None
        elif opts[2].isdigit() and int(opts[2]) >= 1:
            kwargs["window"] = int(opts[2])
        else:
            raise RecoveryError(f"{spec!r}: window must be a number of tokens >= 1 or 'grid', got {opts[2]!r}")
    return kwargs
