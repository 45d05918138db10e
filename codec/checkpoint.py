"""Saving and loading tokenizer weights, safely (no pickle).

Our own weights: a safetensors file whose metadata holds the TokenizerConfig as JSON. Tensors are
stored in float16 to keep shipped files small; they are widened to float32 on load.

Real taming-transformers checkpoints: a Lightning `.ckpt` (a dict with `state_dict`) and its
config YAML (`model.params.ddconfig`, `n_embed`, `embed_dim`). They load with
`torch.load(weights_only=True)`; keys outside the VQModel layout (the loss and discriminator,
`loss.*`) are ignored, and any missing or mis-shaped layout key is an error naming the key.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .safe_weights import check_state, read_weights, save_weights
from .tokenizer import TokenizerConfig, VQModel

FORMAT = "simnet-tokenizer/1"

LAYOUT_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.embedding.weight")


class CheckpointError(ValueError):
    """A weights file that cannot be used; the message names the file and the problem."""


def layout_state_dict(model: VQModel) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith(LAYOUT_PREFIXES)}


def save_tokenizer(model: VQModel, path: Path, info: dict | None = None) -> None:
    save_weights(layout_state_dict(model), path, FORMAT, model.config.to_dict(), info)


def _load_into(model: VQModel, state: dict[str, torch.Tensor], source: str) -> VQModel:
    expected = layout_state_dict(model)
    check_state(expected, state, source, CheckpointError)
    model.load_state_dict({k: state[k].float() for k in expected}, strict=False)
    q = model.quantize
    q.ema_sum.copy_(q.embedding.weight.data)
    q.ema_count.fill_(1.0)
    q.initialised.fill_(True)
    return model.eval()


def load_tokenizer(path: Path) -> tuple[VQModel, dict]:
    """Our safetensors weights -> (model in eval mode, info dict)."""
    state, config, info = read_weights(path, FORMAT, CheckpointError)
    try:
        cfg = TokenizerConfig.from_dict(config)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad tokenizer config in metadata ({e})") from None
    return _load_into(VQModel(cfg), state, str(path)), info


def config_from_taming_yaml(path: Path) -> TokenizerConfig:
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
        params = doc["model"]["params"]
        dd = params["ddconfig"]
        return TokenizerConfig(
            ch=int(dd["ch"]), ch_mult=tuple(int(m) for m in dd["ch_mult"]),
            num_res_blocks=int(dd["num_res_blocks"]),
            attn_resolutions=tuple(int(r) for r in dd.get("attn_resolutions", [])),
            resolution=int(dd["resolution"]), in_channels=int(dd.get("in_channels", 3)),
            out_ch=int(dd.get("out_ch", 3)), z_channels=int(dd["z_channels"]),
            embed_dim=int(params["embed_dim"]), n_embed=int(params["n_embed"]),
            dropout=float(dd.get("dropout", 0.0)))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such config file") from None
    except (KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError) as e:
        raise CheckpointError(f"{path}: not a taming VQGAN config (missing or bad {e})") from None


def load_taming_checkpoint(ckpt_path: Path, config_path: Path) -> VQModel:
    """A taming-transformers VQGAN (Lightning .ckpt + config yaml) -> VQModel in eval mode."""
    cfg = config_from_taming_yaml(config_path)
    try:
        raw = torch.load(str(ckpt_path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt_path}: no such checkpoint") from None
    except Exception as e:  # torch raises several unrelated types for a corrupt or unsafe file
        raise CheckpointError(f"{ckpt_path}: cannot be loaded safely ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:120]})") from None
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt_path}: no state_dict inside")
    return _load_into(VQModel(cfg), state, str(ckpt_path))
