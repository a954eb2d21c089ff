"""SQNConfig: every hyperparameter of the agent in one validated dataclass.

The defaults are the ones measured to learn CartPole-v1 quickly on a CPU (see README,
"Choosing the defaults", and BENCHMARKS.md). ``sqn-train`` turns every field into a
command-line flag, so the docstring under each field is also its ``--help`` text.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

PRECISIONS = ("fp32", "bf16")
"""The networks' arithmetic choices (``SQNConfig.precision``; ``networks.forward_precision`` applies them)."""


@dataclass(frozen=True)
class SQNConfig:
    """Hyperparameters of the SQN agent, checked at construction.

    As in Gymnasium, a value of the wrong type (a str for an int, 1 for a bool) raises
    ``TypeError`` and a value of the right type outside its range raises ``ValueError``;
    both name the field.
    """

    gamma: float = 0.99
    """Discount factor, in [0, 1)."""
    tau: float = 0.005
    """Polyak rate of the target networks: target <- (1 - tau) * target + tau * online, in (0, 1]."""
    learning_rate: float = 1e-3
    """Adam learning rate of the two Q networks (> 0)."""
    batch_size: int = 128
    """Transitions per gradient step (>= 1, at most buffer_size)."""
    buffer_size: int = 100_000
    """Replay capacity in transitions (>= 1)."""
    learning_starts: int = 1_000
    """Transitions stored before the first update (>= 0); the first update also waits for batch_size,
    so it comes at max(learning_starts, batch_size)."""
    train_freq: int = 1
    """Environment steps between updates (>= 1). A vector env of n envs adds n steps per call."""
    gradient_steps: int = 1
    """Gradient steps per update (>= 1). The replay ratio is gradient_steps / train_freq."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the MLP torso used for vector observations."""
    loss: Literal["mse", "huber"] = "mse"
    """TD loss: 'mse' (as in the design note, DI-engine's SQN documentation) or 'huber' (smooth L1, delta 1)."""
    max_grad_norm: float | None = 10.0
    """Clip the Q networks' global gradient norm to this value; None disables clipping."""
    autotune_alpha: bool = True
    """Learn the temperature toward the target entropy; False keeps alpha fixed at initial_alpha."""
    initial_alpha: float = 0.1
    """Starting temperature (> 0); the fixed temperature when autotune_alpha is False."""
    alpha_learning_rate: float = 1e-3
    """Adam learning rate of log(alpha) (> 0)."""
    target_entropy_ratio: float = 0.8
    """Target entropy as a fraction of the maximum, ratio * sum_d log(n_d), in (0, 1)."""
    multidiscrete_target: Literal["independent", "mean"] = "independent"
    """MultiDiscrete TD target: one soft target per action dimension ('independent') or the
    branching-architecture target that averages the per-dimension soft values ('mean')."""
    shared_alpha: bool = True
    """MultiDiscrete only: one temperature for all action dimensions (True) or one per dimension."""
    replay: Literal["auto", "uniform", "frame_stack"] = "auto"
    """Replay layout: 'frame_stack' stores each frame of overlapping uint8 frame stacks once;
    'auto' picks it for channels-first uint8 image stacks and 'uniform' otherwise."""
    replay_on_device: bool = False
    """Keep the replay's observations (uint8 frames stay uint8) in tensors on the learner's device and sample
    there, so that frames never cross the bus when sampling; the sampler, the n-step links and the per-row
    scalars stay on the host, and the batches are the same as with host storage. On CUDA the storage must fit
    in the free GPU memory (checked at construction: a ValueError names the sizes). Checkpoints stay numpy."""
    n_step: int = 3
    """Steps of real reward before bootstrapping (>= 1): y = sum_{k<n} gamma^k r_{t+k} + gamma^n V'(s_{t+n}),
    cut at the end of an episode. Entropy enters only through V' unless soft_n_step (README, "Beyond the design
    note"). 3 learns Acrobot-v1, where 1 does not, and CartPole-v1 sooner (BENCHMARKS.md)."""
    soft_n_step: bool = False
    """n-step returns also collect the entropy bonus of the states they pass through,
    sum_{0<k<m} gamma^k alpha H(pi'(.|s_{t+k})), as the soft Bellman backup does at every step
    (one target forward pass over n - 1 more states per update; README, "n-step returns")."""
    target_update_interval: int = 1
    """Gradient steps between target updates (>= 1); each is target <- (1 - tau) target + tau online.
    Hard updates (DQN's periodic copy): tau=1 with an interval such as 2000."""
    munchausen_scale: float = 0.9
    """Munchausen RL (Vieillard et al. 2020): add scale * clip(alpha log pi'(a_t|s_t), munchausen_clip, 0)
    to the reward in the target, with pi' the target networks' policy. 0 turns it off; 0.9 is the paper's
    value and the default since it made every seed of Acrobot-v1 learn (BENCHMARKS.md, "Munchausen")."""
    munchausen_clip: float = -1.0
    """Lower clip l0 of the Munchausen term (< 0; the paper's -1)."""
    augmentation: Literal["none", "shift"] = "none"
    """Image augmentation of sampled batches: 'shift' is DrQ's random shift (pad shift_pad pixels by edge
    replication, crop back at a random offset), obs and next_obs shifted independently; image observations only."""
    shift_pad: int = 4
    """Padding of the random shift in pixels (>= 1; DrQ's 4 for 84x84 frames)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Arithmetic of the networks' forward and backward passes (learning and acting): 'fp32', or 'bf16'
    (torch.autocast with bfloat16). TD targets, losses, the temperature, the weights and the optimizer
    states are float32 either way. See BENCHMARKS.md, "bf16 against fp32"."""

    def __post_init__(self) -> None:
        _check_range("gamma", self.gamma, 0.0, 1.0, low_open=False, high_open=True)
        _check_range("tau", self.tau, 0.0, 1.0, low_open=True, high_open=False)
        _check_positive("learning_rate", self.learning_rate)
        _check_positive("alpha_learning_rate", self.alpha_learning_rate)
        _check_positive("initial_alpha", self.initial_alpha)
        _check_range("target_entropy_ratio", self.target_entropy_ratio, 0.0, 1.0, low_open=True, high_open=True)
        for name in ("batch_size", "buffer_size", "train_freq", "gradient_steps", "n_step", "target_update_interval",
                     "shift_pad"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("learning_starts", self.learning_starts, minimum=0)
        if self.batch_size > self.buffer_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})"
            )
        if not isinstance(self.hidden_sizes, (tuple, list)) or any(
            isinstance(h, bool) or not isinstance(h, int) for h in self.hidden_sizes
        ):
            raise TypeError(f"hidden_sizes must be a non-empty tuple of positive ints, got {self.hidden_sizes!r}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes must be a non-empty tuple of positive ints, got {self.hidden_sizes!r}")
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        if self.max_grad_norm is not None:
            _check_positive("max_grad_norm", self.max_grad_norm)
        _check_choice("loss", self.loss, ("mse", "huber"))
        _check_choice("multidiscrete_target", self.multidiscrete_target, ("independent", "mean"))
        _check_choice("replay", self.replay, ("auto", "uniform", "frame_stack"))
        _check_choice("augmentation", self.augmentation, ("none", "shift"))
        _check_choice("precision", self.precision, PRECISIONS)
        _check_range("munchausen_scale", self.munchausen_scale, 0.0, math.inf, low_open=False, high_open=True)
        _check_range("munchausen_clip", self.munchausen_clip, -math.inf, 0.0, low_open=True, high_open=True)
        for name in ("autotune_alpha", "shared_alpha", "soft_n_step", "replay_on_device"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SQNConfig:
        """Inverse of ``to_dict``; unknown keys are an error (they usually mean a typo or a newer version)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SQNConfig field(s) {unknown}; known fields are {sorted(known)}")
        # a config saved before a field existed meant that field's behaviour of the time
        values = {**{k: v for k, v in LEGACY_VALUES.items() if k in known}, **data}
        if "hidden_sizes" in values:
            values["hidden_sizes"] = tuple(values["hidden_sizes"])
        return cls(**values)


# Fields whose default changed after they existed in saved configs: the value a config saved before the change
# (which lacks the field) meant. n_step did not exist before its default became 3, and meant one-step returns;
# munchausen_scale came in with n_step, off, and has defaulted to 0.9 since.
LEGACY_VALUES: dict[str, Any] = {"n_step": 1, "munchausen_scale": 0.0}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_positive(name: str, value: Any) -> None:
    if not _is_number(value):
        raise TypeError(f"{name} must be a finite number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_range(name: str, value: Any, low: float, high: float, *, low_open: bool, high_open: bool) -> None:
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if not _is_number(value):
        raise TypeError(f"{name} must be a number in {interval}, got {value!r}")
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")

