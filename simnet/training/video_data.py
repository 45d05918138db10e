"""Token streams for training the spatio-temporal recovery transformer: clips coded as the
temporal token stream codes them (I- and P-frames, the rate knob), split by clip, never by frame.
Lives in simnet because it joins the codec (which makes the grids) and the clips' sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from codec.image_codec import ImageCodec
from codec.images import default_data_root
from codec.temporal import DEFAULT_THRESHOLD, Refresh, TemporalCoder
from codec.video import builtin_clip, read_frames
from simnet.experiment.frames import fit_frame

# the split: training clips of every kind but the two a video call looks like; carphone (a call)
# and the shared akiyo and foreman are held out, for validation and for every reported figure
TRAINING_CLIPS = ("video/football_cif.mp4", "video/ice_cif.mp4", "video/cockatoo_720p.mp4",
                  "builtin:bigbuckbunny", "builtin:bikes")
HELD_OUT_CLIPS = ("video/akiyo_cif.mp4", "video/foreman_cif.mp4", "builtin:carphone")
MAX_SIDE = 640  # larger clips are scaled down to this width (the crops are 16 x 16 tokens)


def clip_path(clip: str, root: Path | None = None) -> Path:
    if clip.startswith("builtin:"):
        return builtin_clip(clip.split(":", 1)[1])
    return (root or default_data_root()) / clip


def clip_size(rgb: np.ndarray) -> tuple[int, int]:
    h, w = rgb.shape[:2]
    if w <= MAX_SIDE:
        return h, w
    return round(h * MAX_SIDE / w / 16) * 16, MAX_SIDE


def stream_grids(codec: ImageCodec, path: Path, level: int, count: int | None = None,
                 threshold: float = DEFAULT_THRESHOLD, refresh: Refresh = Refresh()) -> list[np.ndarray]:
    """The clip's token grids as the temporal stream sends them, frame by frame."""
    coder = TemporalCoder(codec, level, threshold, refresh)
    grids, size = [], None
    for i, rgb in enumerate(read_frames(path, count)):
        size = size or clip_size(rgb)
        grids.append(coder.code(i, fit_frame(rgb, size))[0])
    return grids


def clip_streams(codec: ImageCodec, clips, level: int, cache_dir: Path, count: int | None = None,
                 log=print) -> dict[str, list[np.ndarray]]:
    """Each clip's stream of grids, cached by tokenizer, level and clip."""
    out = {}
    for clip in clips:
        name = clip.replace('/', '_').replace(':', '_')
        cache = cache_dir / f"stream-{codec.checksum[:12]}-{level}-{name}-{count}-t{DEFAULT_THRESHOLD:g}.safetensors"
        if cache.exists():
            stored = load_file(str(cache))
            out[clip] = [stored[k] for k in sorted(stored, key=int)]
            continue
        out[clip] = stream_grids(codec, clip_path(clip), level, count)
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({str(i): g for i, g in enumerate(out[clip])}, str(cache))
        log(f"coded {clip}: {len(out[clip])} frames")
    return out


def frame_pairs(streams: dict[str, list[np.ndarray]], level: int, every: int = 1) -> tuple[dict, dict]:
    """({level: current grids}, {level: their previous frames}) over every clip, every `every`th pair."""
    grids, previous = [], []
    for seq in streams.values():
        for i in range(1, len(seq), every):
            grids.append(seq[i])
            previous.append(seq[i - 1])
    return {level: grids}, {level: previous}


def level_pairs(codec: ImageCodec, grids: dict, previous: dict) -> tuple[dict, dict]:
    """The base level's pairs at every level of the codec too (each code's cell there: the levels
    nest), so one model serves every level as the spatial one does."""
    base = codec.base_level
    out_g, out_p = dict(grids), dict(previous)
    for k in codec.level_sizes:
        if k != base:
            cells = codec.cell_map(k)
            out_g[k] = [cells[g] for g in grids[base]]
            out_p[k] = [cells[g] for g in previous[base]]
    return out_g, out_p
