"""The adversarial term of the VQGAN recipe: a PatchGAN discriminator, hinge losses, and the
adaptive weight that balances the generator's term against the reconstruction (Esser et al. 2021).

The discriminator is taming-transformers' NLayerDiscriminator (pix2pix's PatchGAN): strided 4x4
convolutions with batch normalisation and leaky ReLUs, ending in one logit per overlapping patch.
It exists only while training; no shipped weight file holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class DiscriminatorConfig:
    channels: int = 64  # taming's ndf
    layers: int = 3


class PatchDiscriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig = DiscriminatorConfig(), in_channels: int = 3):
        super().__init__()
        ch = cfg.channels
        seq: list[nn.Module] = [nn.Conv2d(in_channels, ch, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, cfg.layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < cfg.layers else 1
            seq += [nn.Conv2d(ch * prev, ch * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ch * mult),
                    nn.LeakyReLU(0.2, True)]
        seq.append(nn.Conv2d(ch * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*seq)
        for m in self.modules():  # taming's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [-1, 1] -> patch logits (B, 1, h, w): high means real."""
        return self.main(x)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def adaptive_weight(reconstruction: torch.Tensor, adversarial: torch.Tensor, last_layer: torch.Tensor,
                    cap: float = 1e4) -> torch.Tensor:
    """taming's balance: the ratio of the two losses' gradient norms at the decoder's last layer,
    so that the adversarial term never outweighs the reconstruction by its scale alone."""
    rec = torch.autograd.grad(reconstruction, last_layer, retain_graph=True)[0]
    adv = torch.autograd.grad(adversarial, last_layer, retain_graph=True)[0]
    return (rec.norm() / (adv.norm() + 1e-4)).clamp(0.0, cap).detach()
