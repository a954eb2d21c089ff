"""The torso picked for an observation space, and the Nature CNN's channels-last fast path."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sqn_agents.networks import MLP, NatureCNN, SmallCNN, build_q_network, image_layout


@pytest.mark.parametrize(
    "shape,expected",
    [
        ((4, 84, 84), "channels_first"),  # Atari frame stack
        ((10, 10, 4), "channels_last"),  # MinAtar Breakout
        ((10, 10, 10), "channels_last"),  # MinAtar Seaquest: every axis equal, MinAtar's own layout
        ((10, 10, 6), "channels_last"),
        ((3, 210, 160), "channels_first"),  # non-square: the smaller end holds the channels
        ((210, 160, 3), "channels_last"),
        ((8,), None),
        ((4, 84, 84, 3), None),
    ],
)
def test_image_layout(shape, expected):
    assert image_layout(shape) == expected


def test_minatar_seaquest_board_gets_the_small_cnn_over_its_channels():
    space = gym.spaces.Box(0, 1, (10, 10, 10), dtype=bool)
    net = build_q_network(space, 1, 18, (64,))
    assert isinstance(net.body, SmallCNN) and net.channels_last
    obs = torch.zeros(2, 10, 10, 10, dtype=torch.bool)
    obs[0, 3, 4, 7] = True  # one object on channel 7: the output must depend on it
    q = net(obs)
    assert q.shape == (2, 1, 18) and not torch.equal(q[0], q[1])


def test_vector_and_atari_spaces_get_mlp_and_nature_cnn():
    assert isinstance(build_q_network(gym.spaces.Box(-1, 1, (4,)), 1, 2, (8,)).body, MLP)
    assert isinstance(build_q_network(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), 1, 6, (8,)).body, NatureCNN)


def test_nature_cnn_channels_last_equals_plain_nchw_convolutions():
    """Independent route: the same weights through F.conv2d / F.linear on ordinary NCHW tensors."""
    torch.manual_seed(0)
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    net = build_q_network(space, 1, 6, (8,))
    conv = [m for m in net.body.conv if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in conv)
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)

    x = obs.float() / 255.0
    for c, stride in zip(conv, (4, 2, 1), strict=True):
        x = F.relu(F.conv2d(x, c.weight.contiguous(), c.bias, stride=stride))
    lin1, lin2 = [m for m in net.body.head if isinstance(m, torch.nn.Linear)]
    expected = F.linear(F.relu(F.linear(x.flatten(1), lin1.weight, lin1.bias)), lin2.weight, lin2.bias)

    with torch.no_grad():
        got = net(obs)
    assert got.shape == (3, 1, 6)
    torch.testing.assert_close(got[:, 0], expected, rtol=1e-4, atol=1e-5)
