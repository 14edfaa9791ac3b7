"""The seed's network: a fully connected ReLU MLP on flattened 3x32x32 images."""

from itertools import pairwise

import torch
from torch import nn

from server.core.experiment import layer_sizes


class MLP(nn.Module):
    """Flatten -> Linear -> ReLU -> ... -> Linear; layer i's weight is ``layers.{i}.weight``."""

    def __init__(self, hidden_sizes: list[int]) -> None:
        super().__init__()
        sizes = layer_sizes(hidden_sizes)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))

    def forward(self, x: torch.Tensor, fired: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits of ``x``. With ``fired`` (one bool tensor per hidden layer, one flag per unit),
        also ORs into it which units' ReLU output was > 0 for some sample of the batch: on the
        device, without waiting for it (the engine's dead-unit tracking)."""
        x = x.flatten(1)
        for i, layer in enumerate(self.layers[:-1]):
            x = torch.relu(layer(x))
            if fired is not None:
                fired[i].logical_or_(x.detach().amax(0) > 0)
        return self.layers[-1](x)


def build_model(hidden_sizes: list[int], seed: int) -> MLP:
    """PyTorch default init from ``seed``, on the CPU (the same weights for every device)."""
    # fork_rng: seeding must not disturb the global RNG of the process hosting the engine.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(hidden_sizes)
