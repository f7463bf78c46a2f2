"""MoVQGAN's patch discriminator and hinge losses, trainable with the loop's single optimiser.

The generator's adversarial term is computed through the discriminator with its parameters detached
(``torch.func.functional_call``) and the discriminator's term on detached reconstructions, so one backward pass
gives each network only its own gradient: the sum of both losses can be minimised by one AdamW step.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix / taming's NLayerDiscriminator): strided 4×4 convs, a real/fake logit per patch."""

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 2):
        super().__init__()
        layers = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, num_layers + 1):
            out = channels * min(2 ** i, 8)
            stride = 2 if i < num_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False), nn.GroupNorm(1, out),
                       nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def adversarial_losses(discriminator: PatchDiscriminator, real: torch.Tensor, fake: torch.Tensor):
    """(generator loss, discriminator hinge loss), each reaching only its own network's parameters."""
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
    generator_loss = -functional_call(discriminator, frozen, (fake,)).mean()
    discriminator_loss = 0.5 * (F.relu(1.0 - discriminator(real)).mean()
                                + F.relu(1.0 + discriminator(fake.detach())).mean())
    return generator_loss, discriminator_loss
