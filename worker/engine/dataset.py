"""Datasets as whole uint8 tensors: images N x 3 x 32 x 32 (CIFAR's channel planes), labels N."""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8, N x 3 x 32 x 32
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return self.labels.numel()

    def first(self, size: int | None, what: str) -> "Split":
        """The first ``size`` samples (all when None), copied so the rest can be freed."""
        if size is None:
            return self
        if size > len(self):
            raise ValueError(f"{what} {size} exceeds the {len(self)} samples available")
        return Split(self.images[:size].clone(), self.labels[:size].clone())

    def to(self, device: torch.device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class Dataset:
    train: Split
    test: Split
