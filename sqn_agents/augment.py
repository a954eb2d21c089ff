"""Image augmentation for sampled batches: DrQ's random shift (Kostrikov et al. 2020, "Image
Augmentation Is All You Need").

Each image is padded by ``pad`` pixels on every side by repeating its edge pixels, then cropped
back to its size at a random offset in ``[0, 2 * pad]`` along each axis, i.e. shifted by up to
``pad`` pixels. The padding is never materialised: the crop reads the source at clamped
indices, which is exactly edge replication, for every image of the batch in one gather, on
whatever device the batch is, in its own dtype (uint8 frames stay uint8).
"""

from __future__ import annotations

import torch


def random_shift(
    images: torch.Tensor, pad: int, generator: torch.Generator | None = None, channels_last: bool = False
) -> torch.Tensor:
    """Shift each image of ``(B, C, H, W)`` (or ``(B, H, W, C)`` with ``channels_last``) by a random offset.

    The offsets are drawn independently per image, uniformly from ``{-pad, ..., pad}`` per axis.

    >>> x = torch.arange(9, dtype=torch.uint8).view(1, 1, 3, 3)
    >>> y = random_shift(x, pad=1, generator=torch.Generator().manual_seed(0))
    >>> y.shape, y.dtype
    (torch.Size([1, 1, 3, 3]), torch.uint8)
    """
    if images.dim() != 4:
        raise ValueError(f"random_shift expects a batch of images (B, C, H, W) or (B, H, W, C), got shape {tuple(images.shape)}")
    b = images.shape[0]
    h, w = (images.shape[1], images.shape[2]) if channels_last else (images.shape[2], images.shape[3])
    device = images.device
    shifts = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator, device=device) - pad
    rows = (torch.arange(h, device=device) + shifts[:, :1]).clamp_(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=device) + shifts[:, 1:]).clamp_(0, w - 1)  # (B, W)
    batch = torch.arange(b, device=device)[:, None, None]
    if channels_last:
        return images[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    # Advanced indices around the channel slice put their dims first: (B, H, W, C), viewed back as
    # (B, C, H, W). The result is laid out channels-last in memory, which the Nature CNN prefers.
    return images[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


__all__ = ["random_shift"]
