"""DrQ's random shift: shapes, dtypes, the values against pad-then-crop, the range of shifts, independence."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.augment import random_shift


def recover_shifts(x: torch.Tensor, y: torch.Tensor, pad: int) -> list[tuple[int, int]]:
    """For each image, the (dy, dx) in [-pad, pad]^2 whose replicate-pad-and-crop of x equals y (exactly one)."""
    h, w = x.shape[-2:]
    padded = F.pad(x.double(), (pad, pad, pad, pad), mode="replicate")
    found = []
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)
                if torch.equal(padded[i, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w], y[i].double())]
        assert len(hits) == 1, f"image {i}: {len(hits)} matching shifts"
        found.append(hits[0])
    return found


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_shift_is_pad_by_replication_then_crop(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randperm(4 * 12 * 12, generator=g).view(1, 4, 12, 12).repeat(64, 1, 1, 1) % 251).to(dtype)
    y = random_shift(x, pad=4, generator=g)
    assert y.shape == x.shape and y.dtype == dtype
    shifts = recover_shifts(x, y, 4)  # every output is one of the (2*4+1)^2 crops of the padded input
    assert len(set(shifts)) > 20  # many different offsets in one batch (81 possible)
    dys, dxs = zip(*shifts, strict=True)
    assert min(dys) >= -4 and max(dys) <= 4 and min(dxs) >= -4 and max(dxs) <= 4
    # values never leave the input's own set of pixels
    assert set(torch.unique(y).tolist()) <= set(torch.unique(x).tolist())


def test_offsets_cover_the_whole_range_uniformly():
    g = torch.Generator().manual_seed(1)
    x = torch.arange(7 * 7, dtype=torch.float32).view(1, 1, 7, 7).repeat(4000, 1, 1, 1)
    shifts = np.array(recover_shifts(x[:300], random_shift(x[:300], 2, g), 2))
    assert set(map(tuple, shifts)) == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    # the centre pixel moves by the shift: its value tells dy and dx for every image
    y = random_shift(x, 2, g)
    centre = y[:, 0, 3, 3].long()
    dy, dx = centre // 7 - 3, centre % 7 - 3
    for d in (dy, dx):
        counts = torch.bincount(d + 2, minlength=5).double()
        assert (counts / counts.sum() - 0.2).abs().max() < 0.03


def test_channels_last_matches_channels_first():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x = torch.randint(0, 255, (16, 3, 10, 10), dtype=torch.uint8)
    a = random_shift(x, 1, g1)
    b = random_shift(x.permute(0, 2, 3, 1).contiguous(), 1, g2, channels_last=True)
    assert torch.equal(a, b.permute(0, 3, 1, 2))


def test_non_images_are_refused():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        random_shift(torch.zeros(4, 84, 84), 4)


def test_agent_shifts_obs_and_next_obs_independently(monkeypatch):
    space = gym.spaces.Box(0, 255, (2, 12, 12), np.uint8)
    agent = SQNAgent(space, gym.spaces.Discrete(2), SQNConfig(augmentation="shift", shift_pad=2, batch_size=32,
                     learning_starts=32, replay="uniform"), device="cpu", seed=0)
    frame = torch.randperm(2 * 144).view(2, 12, 12).numpy() % 251
    for _ in range(32):
        agent.observe(frame.astype(np.uint8), 0, 0.0, frame.astype(np.uint8), False, False)
    seen = []
    from sqn_agents import learner as learner_module  # the gradient step lives in the learner
    real = learner_module.random_shift
    monkeypatch.setattr(learner_module, "random_shift", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    agent.learn()
    obs_aug, next_aug = seen
    x = torch.as_tensor(frame.astype(np.uint8))[None].repeat(32, 1, 1, 1)
    a, b = recover_shifts(x, obs_aug, 2), recover_shifts(x, next_aug, 2)
    assert a != b  # independent draws (identical for all 32 images would have probability 25**-32)


def test_shift_is_refused_for_vector_observations():
    with pytest.raises(ValueError, match="augmentation='shift' needs image observations"):
        SQNAgent(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), SQNConfig(augmentation="shift"), device="cpu")
