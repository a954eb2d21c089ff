"""The gradient step never waits for the device: no tensor is read into Python until its metrics are.

On a GPU every ``.item()``, ``float(t)``, ``if t:`` or ``.tolist()`` blocks the host until the
device has caught up, which leaves the device idle while Python prepares the next step. The
test counts those calls (and ``torch.cuda.synchronize``) during ``learn()`` on the CPU, where
they happen at the same places, so it holds on machines without a GPU.
"""

from __future__ import annotations

import collections
import math
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import pytest
import torch

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.metrics import LearnMetrics

READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")
"""The ways Python reads a tensor's value: each one waits for the device."""

BASE = dict(hidden_sizes=(32,), batch_size=16, buffer_size=500, learning_starts=16)
CASES = {
    "defaults": (gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2), {}),
    "soft_n_step_munchausen_huber_no_clip": (gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(3),
                                        dict(n_step=3, soft_n_step=True, munchausen_scale=0.9, loss="huber", max_grad_norm=None,
                                             target_update_interval=2)),
    "multidiscrete_mask_per_dimension_alpha": (gym.spaces.Box(-1, 1, (4,), np.float32),
                                               gym.spaces.MultiDiscrete([2, 3]), dict(shared_alpha=False)),
    "image_shift_bf16": (gym.spaces.Box(0, 255, (10, 10, 3), np.uint8), gym.spaces.Discrete(4),
                         dict(augmentation="shift", shift_pad=1, precision="bf16")),
    "replay_on_device_soft_n_step": (gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(3),
                                     dict(replay_on_device=True, n_step=3, soft_n_step=True)),
    "replay_on_device_frame_stack": (gym.spaces.Box(0, 255, (4, 36, 36), np.uint8), gym.spaces.Discrete(3),
                                     dict(replay_on_device=True, n_step=3, soft_n_step=True)),
    "replay_on_device_dict": (gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (3,), np.float32), "y": gym.spaces.Discrete(4)}),
                              gym.spaces.Discrete(3), dict(replay_on_device=True, n_step=1)),
    "replay_on_device_dict_frame_stack": (gym.spaces.Dict({"frames": gym.spaces.Box(0, 255, (4, 36, 36), np.uint8),
                                                           "y": gym.spaces.Discrete(4)}),
                                          gym.spaces.Discrete(3), dict(replay_on_device=True, n_step=3)),
}


@contextmanager
def counting_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter]:
    """Count every tensor read into Python, and every ``torch.cuda.synchronize``, inside the block."""
    counts: collections.Counter = collections.Counter()

    def counted(name, original):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return original(*args, **kwargs)
        return wrapper

    with monkeypatch.context() as m:
        for name in READS:
            m.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
        m.setattr(torch.cuda, "synchronize", counted("cuda.synchronize", torch.cuda.synchronize))
        yield counts


def filled_agent(case: str) -> SQNAgent:
    obs_space, act_space, overrides = CASES[case]
    agent = SQNAgent(obs_space, act_space, SQNConfig(**BASE, **overrides), device="cpu", seed=0)
    obs_space.seed(0), act_space.seed(0)
    for _ in range(40):
        agent.observe(obs_space.sample(), act_space.sample(), 1.0, obs_space.sample(), False, False)
    return agent


def test_the_counter_sees_a_read():
    with pytest.MonkeyPatch.context() as mp, counting_reads(mp) as counts:
        if torch.ones(()) > 0:
            float(torch.ones(()))
    assert counts == {"__bool__": 1, "__float__": 1}


@pytest.mark.parametrize("case", sorted(CASES))
def test_learn_reads_nothing_from_the_device_until_the_metrics_are_read(case, monkeypatch):
    agent = filled_agent(case)
    with counting_reads(monkeypatch) as counts:
        metrics = agent.learn()  # the 25 gradient steps due
        assert agent.gradient_steps == 25 and isinstance(metrics, LearnMetrics) and metrics
    assert counts == {}, f"host reads during learn(): {dict(counts)}"
    with counting_reads(monkeypatch) as counts:
        values = dict(metrics)
    assert counts and all(math.isfinite(v) for v in values.values())  # the read is where the waiting happens
    with counting_reads(monkeypatch) as counts:
        assert dict(metrics) == values and metrics.q_loss == values["q_loss"]
    assert counts == {}  # read once, then cached
    assert pickle.loads(pickle.dumps(metrics)) == values  # a plain dict: no tensors, no learner


@pytest.mark.parametrize("case", [c for c in sorted(CASES) if "replay_on_device" in c])
def test_a_device_replay_reads_nothing_back_when_adding_or_sampling(case, monkeypatch):
    agent = filled_agent(case)
    obs_space, act_space, _ = CASES[case]
    rows = [(obs_space.sample(), act_space.sample(), obs_space.sample()) for _ in range(5)]
    with counting_reads(monkeypatch) as counts:
        for obs, action, next_obs in rows:
            agent.observe(obs, action, 1.0, next_obs, False, False)
        batch = agent.replay.sample(16, n_step=3, gamma=0.9, intermediate=True)
    assert counts == {}, f"host reads in observe/sample with the replay on the device: {dict(counts)}"
    assert all(isinstance(x, (torch.Tensor, dict)) for x in batch)


def test_a_skipped_step_is_reported_when_read_not_when_run(monkeypatch):
    agent = filled_agent("defaults")
    agent.learn()
    sample = agent.replay.sample
    monkeypatch.setattr(agent.replay, "sample",
                        lambda *args, **kwargs: (b := sample(*args, **kwargs))._replace(
                            rewards=np.full_like(b.rewards, np.inf)))
    agent.observe(np.zeros(4, np.float32), 0, 1.0, np.zeros(4, np.float32), False, False)
    before = [p.clone() for p in (*agent.q_nets.parameters(), *agent.target_nets.parameters(), agent.log_alpha)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning while the step runs
        metrics = agent.learn()
    after = [*agent.q_nets.parameters(), *agent.target_nets.parameters(), agent.log_alpha]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # weights, targets, alpha unmoved
    with pytest.warns(RuntimeWarning, match=r"skipped 1 gradient step\(s\) .*; 1 skipped so far"):
        assert not math.isfinite(metrics["q_loss"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once
        assert agent.skipped_updates == 1 and math.isfinite(metrics["alpha"])
    monkeypatch.setattr(agent.replay, "sample", sample)
    agent.observe(np.zeros(4, np.float32), 0, 1.0, np.zeros(4, np.float32), False, False)
    assert math.isfinite(agent.learn()["q_loss"])  # healthy batches learn again
    assert not all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (benchmarks/gpu_check.py runs these)")


@CUDA
@pytest.mark.parametrize("case", sorted(CASES))
def test_on_cuda_learn_reads_nothing_and_matches_the_cpu(case, monkeypatch):
    obs_space, act_space, overrides = CASES[case]
    agents = {}
    for device in ("cpu", "cuda"):
        agent = SQNAgent(obs_space, act_space, SQNConfig(**BASE, **overrides), device=device, seed=0)
        obs_space.seed(0), act_space.seed(0)
        for _ in range(40):
            agent.observe(obs_space.sample(), act_space.sample(), 1.0, obs_space.sample(), False, False)
        agents[device] = agent
    with counting_reads(monkeypatch) as counts:
        metrics = agents["cuda"].learn()
    assert counts == {}, f"host reads during learn() on CUDA: {dict(counts)}"
    if "augmentation" not in overrides:  # (the shifts come from a CUDA generator: other offsets than the CPU's)
        want = dict(agents["cpu"].learn())
        for name, value in dict(metrics).items():
            assert value == pytest.approx(want[name], rel=0.05, abs=0.02), name


@CUDA
def test_pinned_staging_copies_exactly_and_reuses_its_two_buffer_sets():
    from sqn_agents.learner import PinnedStaging

    staging, rng = PinnedStaging(torch.device("cuda")), np.random.default_rng(0)
    seen = []
    for step in range(6):
        arrays = (rng.integers(0, 255, (8, 4, 84, 84), dtype=np.uint8), rng.normal(size=8).astype(np.float32), None)
        out = staging.to_device(arrays)
        assert out[2] is None and all(t.device.type == "cuda" for t in out[:2])
        for x, t in zip(arrays[:2], out[:2], strict=True):
            np.testing.assert_array_equal(t.cpu().numpy(), x)
        seen.append(staging.buffers[step % 2][0].data_ptr())
    assert seen[0::2] == [seen[0]] * 3 and seen[1::2] == [seen[1]] * 3 and seen[0] != seen[1]
    assert staging.buffers[0][0].is_pinned()
