"""Image quality metrics in plain torch: PSNR, SSIM and MS-SSIM, and `quality`, the one function
every report, evaluation and training validation scores decoded images with; and the mean
CIEDE2000 colour difference (scikit-image), which training validation and simnet's metrics share.

Defined as in Wang et al. (2003, 2004) with the usual constants (11x11 Gaussian window, sigma 1.5,
K1 = 0.01, K2 = 0.03, the five MS-SSIM scale weights), on RGB images in [0, 1]. These serve the
default install; further metrics plug into `quality` as `extra` (pyiqa's, simnet/experiment/iqa.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model space -> [0, 1]."""
    return (x.clamp(-1, 1) + 1) / 2


def psnr(x: torch.Tensor, y: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB over all channels; x, y in [0, peak], shape (B, C, H, W)."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(peak**2 / mse.clamp_min(1e-12))


def _gaussian_1d(size: int, sigma: float, dtype, device) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_components(x, y, g, c1, c2):
    """SSIM and contrast-structure maps; the Gaussian window is applied as two 1-D passes over
    the five moment images at once (x, y, x^2, y^2, xy)."""
    channels = x.shape[1]
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    n = stack.shape[1]
    blurred = F.conv2d(stack, g.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n)
    blurred = F.conv2d(blurred, g.view(1, 1, 1, -1).expand(n, 1, 1, -1), groups=n)
    mu_x, mu_y, exx, eyy, exy = blurred.split(channels, dim=1)
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return luminance * cs, cs


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image mean SSIM; x, y in [0, 1], (B, C, H, W), valid (unpadded) windows only."""
    g = _gaussian_1d(window_size, sigma, x.dtype, x.device)
    s, _ = _ssim_components(x, y, g, 0.01**2, 0.03**2)
    return s.flatten(1).mean(1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image MS-SSIM over five scales. Images smaller than 161 px on a side use a window
    shrunk to fit the coarsest scale (as pytorch-msssim does); below 48 px, the coarsest scales
    are dropped and the remaining weights renormalised, so tiny frames still get a value."""
    scales = len(MS_SSIM_WEIGHTS)
    while scales > 1 and min(x.shape[-2:]) // 2 ** (scales - 1) < 3:
        scales -= 1
    smallest = min(x.shape[-2:]) // 2 ** (scales - 1)
    if smallest < window_size:
        window_size = max(1, min(smallest, 3) if smallest < 3 else smallest - (1 - smallest % 2))
    g = _gaussian_1d(window_size, sigma, x.dtype, x.device)
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    if scales < len(MS_SSIM_WEIGHTS):
        weights = weights / weights.sum()
    values = []
    for scale in range(scales):
        s, cs = _ssim_components(x, y, g, 0.01**2, 0.03**2)
        if scale < scales - 1:
            values.append(torch.relu(cs.flatten(1).mean(1)))
            pad = (0, x.shape[-1] % 2, 0, x.shape[-2] % 2)
            x = F.avg_pool2d(F.pad(x, pad, mode="replicate"), 2)
            y = F.avg_pool2d(F.pad(y, pad, mode="replicate"), 2)
        else:
            values.append(torch.relu(s.flatten(1).mean(1)))
    stacked = torch.stack(values, dim=1)
    return torch.prod(stacked ** weights[None, :], dim=1)


def unit_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1)[None].float() / 255


def quality(reference: np.ndarray, decoded: np.ndarray, extra=None, ssim: bool = False) -> dict:
    """PSNR (RGB, 0-255) and MS-SSIM of two HxWx3 uint8 images, with `ssim` also SSIM and SSIM in
    dB, and whatever `extra` ((reference, decoded) -> {field: value}, e.g. the optional pyiqa
    metrics) adds."""
    x, y = unit_tensor(reference), unit_tensor(decoded)
    scores = {"psnr": float(psnr(x, y)[0]), "ms_ssim": float(ms_ssim(x, y)[0])}
    if ssim:
        scores.update(ssim_scores(reference, decoded))
    return {**scores, **extra(reference, decoded)} if extra is not None else scores


def ssim_scores(reference: np.ndarray, decoded: np.ndarray) -> dict:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window of sigma 1.5, RGB channels averaged) and
    SSIM in dB, -10 log10(1 - SSIM), the scale video papers report (capped at 100 dB)."""
    from skimage.metrics import structural_similarity

    value = float(structural_similarity(reference, decoded, data_range=255, channel_axis=2, gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False))
    return {"ssim": value, "ssim_db": float(min(100.0, -10 * np.log10(max(1 - value, 1e-10))))}


def region_psnr(reference: np.ndarray, decoded: np.ndarray, region: np.ndarray) -> float | None:
    """PSNR (RGB, 0-255) of two HxWx3 uint8 images over the pixels where `region` (H, W bool) is
    true: where a recovery acts (the lost tokens' pixels) or where it should change nothing. None
    for an empty region."""
    if not region.any():
        return None
    err = (reference[region].astype(np.float64) - decoded[region].astype(np.float64)) ** 2
    return float(10 * np.log10(255.0**2 / max(err.mean(), 1e-12)))


def lost_split(reference: np.ndarray, decoded: np.ndarray, lost: np.ndarray, factor: int) -> dict:
    """`psnr_lost` and `psnr_received`: the PSNR over the pixels of the lost tokens ((h, w) bool,
    each token a factor x factor block from the top left, cropped to the picture) and over the
    rest; None for an empty part."""
    h, w = reference.shape[:2]
    pixels = np.repeat(np.repeat(lost, factor, 0), factor, 1)[:h, :w]
    return {"psnr_lost": region_psnr(reference, decoded, pixels),
            "psnr_received": region_psnr(reference, decoded, ~pixels)}


def ciede2000(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference over the pixels of two HxWx3 uint8 images (sRGB -> CIELAB,
    D65; scikit-image)."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    return float(deltaE_ciede2000(rgb2lab(reference), rgb2lab(decoded)).mean())
