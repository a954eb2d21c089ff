"""Q networks: a torso chosen from the observation space, and a head with one Q value per action.

The torso maps raw observations (any dtype: uint8 frames are scaled to [0, 1] here, on the
device, so replay and host-to-device copies stay uint8) to a feature vector. The head
outputs ``D * N`` numbers reshaped to a ``(B, D, N)`` Q table (see ``soft_q.py``).

Observations of several parts (``observations.ObservationCodec``: Dict, Tuple, Discrete,
MultiDiscrete, MultiBinary) go through ``CombinedQNetwork``: each part through its own torso
(a CNN for an image, one-hot for Discrete and MultiDiscrete, flattening for vectors and
MultiBinary), the features concatenated and an MLP on top, as SB3's ``CombinedExtractor``.

A user may replace the torso with their own module through ``network_factory``: a callable
``(observation_space, num_outputs) -> nn.Module`` whose module maps a float tensor
``(B, *obs_shape)`` to ``(B, num_outputs)``. For observations of several parts the factory is
called with the ``gym.spaces.Dict`` of the parts (``ObservationCodec.network_space``) and its
module receives a dict of tensors as stored (uint8 images, zero-based int64 indices for
Discrete parts, int8 for MultiBinary): the parts of that ``Dict`` only, so the legal-action mask
is left out unless the agent was built with ``mask_as_input=True`` (then it is the bool
``(B, D, N)`` part ``"action_mask"``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from sqn_agents.config import PRECISIONS
from sqn_agents.layout import observation_layout

NetworkFactory = Callable[[gym.spaces.Space, int], nn.Module]


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' picks CUDA when it is available, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def forward_precision(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context the networks run in: bfloat16 autocast for ``"bf16"``, nothing for ``"fp32"``.

    Under autocast the matrix products and convolutions (and their backward) compute in bfloat16
    while the weights, and so the optimizer states, stay float32; callers cast the Q tables back
    to float32 (``.float()``) before the soft-Q math, so targets and losses are float32 too.
    """
    if precision == "fp32":
        return contextlib.nullcontext()  # not a disabled autocast: it costs nothing on the act path
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _to_float(obs: torch.Tensor) -> torch.Tensor:
    """Cast observations to float32; uint8 images are scaled to [0, 1]."""
    if obs.dtype == torch.uint8:
        return obs.float().div_(255.0)
    return obs.float()


class MLP(nn.Module):
    """Flatten, then fully connected ReLU layers, then a linear output layer."""

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], out_features: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class NatureCNN(nn.Module):
    """The convolutional network of Mnih et al. (2015), for channels-first frame stacks such as (4, 84, 84).

    The convolutions run in torch's channels-last memory format (NHWC): on this project's CPU
    a twin update at batch 64 in plain torch took 86 ms with it against 107 ms in NCHW
    (BENCHMARKS.md, "Atari update, sampling and act against bare torch"). Only the memory
    layout changes: shapes, values and the checkpointed weights are the same.
    """

    input_memory_format = torch.channels_last  # QNetwork lays out uint8 inputs so before casting them

    def __init__(self, obs_shape: tuple[int, int, int], out_features: int, hidden: int = 512) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(obs_shape[0], 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.conv(torch.zeros(1, *obs_shape)).shape[1]
        self.head = nn.Sequential(nn.Linear(n_flat, hidden), nn.ReLU(), nn.Linear(hidden, out_features))
        self.conv.to(memory_format=torch.channels_last)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(obs.contiguous(memory_format=torch.channels_last)))


class SmallCNN(nn.Module):
    """One 3x3 convolution and a 128-unit layer: the MinAtar network (Young & Tian, 2019), for small images."""

    def __init__(self, obs_shape: tuple[int, int, int], out_features: int) -> None:
        super().__init__()
        c, h, w = obs_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, 16, 3, stride=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(16 * (h - 2) * (w - 2), 128), nn.ReLU(), nn.Linear(128, out_features),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class QNetwork(nn.Module):
    """Observation -> (B, D, N) Q table. Casts and, for channels-last images, transposes the input."""

    def __init__(self, body: nn.Module, action_dims: int, num_actions: int, channels_last: bool = False,
                 inputs: Sequence[str] = ()) -> None:
        super().__init__()
        self.body = body
        self.action_dims = action_dims
        self.num_actions = num_actions
        self.channels_last = channels_last
        self.inputs = tuple(inputs)  # for a dict of parts: the parts the body is given (a stored mask may not be one)

    def forward(self, obs: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(obs, dict):  # a user's module over the parts of its space
            return self.body({k: obs[k] for k in self.inputs}).view(-1, self.action_dims, self.num_actions)
        if self.channels_last:
            obs = obs.permute(0, 3, 1, 2)
        memory_format = getattr(self.body, "input_memory_format", None)
        if memory_format is not None and obs.dim() == 4:
            obs = obs.contiguous(memory_format=memory_format)  # re-lay the uint8 input, 1/4 the bytes of float32
        x = _to_float(obs)  # keeps the memory format
        return self.body(x).view(-1, self.action_dims, self.num_actions)


class PartTorso(nn.Module):
    """One observation part -> a flat float feature vector ``(B, features)``."""

    def __init__(self, space: gym.spaces.Space) -> None:
        super().__init__()
        self.kind, self.channels_last, self.cnn = "flatten", False, None
        if isinstance(space, gym.spaces.Discrete):
            self.kind, self.features = "one_hot", int(space.n)
            self.register_buffer("offsets", torch.zeros(1, dtype=torch.int64), persistent=False)
        elif isinstance(space, gym.spaces.MultiDiscrete):  # one one-hot block per component, side by side
            nvec = torch.as_tensor(space.nvec.ravel(), dtype=torch.int64)
            self.kind, self.features = "one_hot", int(nvec.sum())
            self.register_buffer("offsets", torch.cumsum(nvec, 0) - nvec, persistent=False)
        elif isinstance(space, gym.spaces.Box) and observation_layout(space.shape, space.dtype).image is not None \
                and sorted(space.shape)[1] >= 3:
            layout, shape = observation_layout(space.shape, space.dtype).image, tuple(space.shape)
            chw = shape if layout == "channels_first" else (shape[2], shape[0], shape[1])
            self.kind, self.channels_last, self.features = "image", layout == "channels_last", 256
            self.cnn = NatureCNN(chw, self.features) if min(chw[1:]) >= 36 else SmallCNN(chw, self.features)
        else:  # vectors, MultiBinary, and images too small for a 3x3 convolution
            self.features = int(np.prod(space.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "one_hot":
            index = x.reshape(len(x), -1) + self.offsets
            return torch.zeros(len(x), self.features, device=x.device).scatter_(1, index, 1.0)
        if self.kind == "image":
            x = x.permute(0, 3, 1, 2) if self.channels_last else x
            return torch.relu(self.cnn(_to_float(x)))
        return _to_float(x).reshape(len(x), -1)


class CombinedQNetwork(nn.Module):
    """Observation parts -> (B, D, N): a torso per part, the features concatenated, then an MLP."""

    def __init__(self, space: gym.spaces.Dict, action_dims: int, num_actions: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.names = list(space.spaces)
        # ModuleDict keys may not contain '.', which nested part names do
        self.torsos = nn.ModuleList([PartTorso(s) for s in space.spaces.values()])
        self.head = MLP(sum(t.features for t in self.torsos), hidden_sizes, action_dims * num_actions)
        self.action_dims, self.num_actions = action_dims, num_actions

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        features = torch.cat([torso(obs[name]) for name, torso in zip(self.names, self.torsos, strict=True)], dim=1)
        return self.head(features).view(-1, self.action_dims, self.num_actions)


def image_layout(shape: tuple[int, ...]) -> str | None:
    """'channels_first', 'channels_last' or None (not an image): ``layout.observation_layout``'s answer."""
    return observation_layout(shape, np.float32).image


def build_q_network(
    observation_space: gym.spaces.Space,
    action_dims: int,
    num_actions: int,
    hidden_sizes: Sequence[int],
    network_factory: NetworkFactory | None = None,
) -> QNetwork | CombinedQNetwork:
    """Pick a torso for the observation space (or call the user's factory) and wrap it as a QNetwork.

    A ``gym.spaces.Dict`` is the parts of ``ObservationCodec.network_space``: one torso per part.
    """
    out = action_dims * num_actions
    if network_factory is not None:
        inputs = list(observation_space.spaces) if isinstance(observation_space, gym.spaces.Dict) else ()
        return QNetwork(network_factory(observation_space, out), action_dims, num_actions, inputs=inputs)
    if isinstance(observation_space, gym.spaces.Dict):
        return CombinedQNetwork(observation_space, action_dims, num_actions, hidden_sizes)
    shape = tuple(observation_space.shape)
    layout = observation_layout(shape, observation_space.dtype).image
    if layout is None:
        return QNetwork(MLP(int(np.prod(shape)), hidden_sizes, out), action_dims, num_actions)
    chw = shape if layout == "channels_first" else (shape[2], shape[0], shape[1])
    body = NatureCNN(chw, out) if min(chw[1:]) >= 36 else SmallCNN(chw, out)
    return QNetwork(body, action_dims, num_actions, channels_last=layout == "channels_last")
