"""``SQNConfig.replay_on_device``: the replay's observations in torch tensors on the learner's device.

Tested on the CPU as a device (the same code path as CUDA: torch tensors as storage, batches
gathered from them): the batches are bit for bit those of the host replay for the same
transitions and seed, ``learn()`` gives the same losses and weights, checkpoints stay numpy and
continue identically, and on CUDA a buffer that does not fit in the free memory is refused.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_n_step import GAMMA, History

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.frame_replay import FrameStackReplayBuffer
from sqn_agents.learner import Learner
from sqn_agents.observations import MASK_KEY
from sqn_agents.replay import Batch, ReplayBuffer

CPU = torch.device("cpu")
KINDS = ("vector", "dict", "uniform_stacks", "frame_stack", "frame_stack_last_axis", "dict_frame_stack")


def make_buffer(kind: str, capacity: int, device: torch.device | None):
    """A buffer of ``kind`` for ``History`` rows (see ``rows``), with host (None) or device storage."""
    if kind == "vector":
        return ReplayBuffer(capacity, (3,), np.float32, 1, seed=0, device=device)
    if kind == "dict":
        return ReplayBuffer(capacity, {"x": (3,), MASK_KEY: (1, 2)}, {"x": np.float32, MASK_KEY: bool}, 1, seed=0,
                            device=device)
    if kind == "uniform_stacks":
        return ReplayBuffer(capacity, (3, 3, 3), np.uint8, 1, seed=0, device=device)
    if kind == "frame_stack":
        return FrameStackReplayBuffer(capacity, (3, 3, 3), np.uint8, 1, seed=0, device=device)
    if kind == "dict_frame_stack":  # the frame-stack part deduplicated, the other part per row
        return FrameStackReplayBuffer(capacity, {"frames": (3, 3, 3), "score": (2,)}, {"frames": np.uint8, "score": np.float32},
                                      1, seed=0, frame_part="frames", device=device)
    return FrameStackReplayBuffer(capacity, (3, 3, 3), np.uint8, 1, seed=0, stack_axis=2, device=device)


def rows(kind: str, rng: np.random.Generator, calls: int):
    """``add`` arguments of interleaved streams with episode ends, in the layout ``kind`` stores."""
    history = History(0 if kind in ("vector", "dict") else 3)
    for env_ids, obs, actions, rewards, next_obs, term, trunc in history.stream_steps(rng, streams=3, calls=calls):
        actions = rng.integers(0, 4, actions.shape)
        if kind == "dict":  # a mask part that follows the observation
            obs, next_obs = ({"x": o, MASK_KEY: (o[:, None, 1:] % 2) == 0} for o in (obs, next_obs))
        if kind == "dict_frame_stack":  # a second part that follows the frames
            obs, next_obs = ({"frames": o, "score": o[:, -1, 0, :2].astype(np.float32) / 7} for o in (obs, next_obs))
        if kind == "frame_stack_last_axis":  # (3, 3, K): frames stacked along the last axis
            obs, next_obs = np.moveaxis(obs, 1, -1), np.moveaxis(next_obs, 1, -1)
        yield obs, actions, rewards, next_obs, term, trunc, env_ids


def assert_same_batch(on_device: Batch, on_host: Batch, device: torch.device) -> None:
    """Every field of ``on_device`` is a tensor on ``device`` holding exactly the host batch's array."""
    for name, d, h in zip(Batch._fields, on_device, on_host, strict=True):
        assert (d is None) == (h is None), name
        if h is None:
            continue
        parts = d.items() if isinstance(h, dict) else [("", d)]
        for part, tensor in parts:
            expected = h[part] if part else h
            assert isinstance(tensor, torch.Tensor) and tensor.device == device, (name, part)
            array = tensor.numpy()
            assert array.dtype == expected.dtype and array.shape == expected.shape, (name, part)
            np.testing.assert_array_equal(array, expected, err_msg=f"{name} {part}")


@pytest.mark.filterwarnings("ignore::sqn_agents.frame_replay.FrameStackCapacityWarning")  # a small ring, 3 streams
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("capacity", [40, 1000])  # 40: the rings wrap around many times
def test_device_storage_samples_the_host_replays_batches_bit_for_bit(kind, capacity):
    host, dev = make_buffer(kind, capacity, None), make_buffer(kind, capacity, CPU)
    for call, args in enumerate(rows(kind, np.random.default_rng(1), calls=120)):
        host.add(*args)
        dev.add(*args)
        if call % 10 == 9:  # sampling between adds, with every horizon and both kinds of n-step return
            for n_step, intermediate in ((1, False), (3, False), (3, True)):
                assert_same_batch(dev.sample(32, n_step, GAMMA, intermediate),
                                  host.sample(32, n_step, GAMMA, intermediate), CPU)
    assert len(dev) == len(host) > 0
    np.testing.assert_array_equal(dev.succ, host.succ)  # the same links


@pytest.mark.parametrize("device", [None, CPU])
@pytest.mark.parametrize("kind", ["vector", "dict"])
def test_rows_of_one_stream_in_one_add_link_to_each_other_and_to_the_previous_add(kind, device):
    """Linking compares a row's obs with its predecessor's next_obs taken from the same call or, for a
    stream's first row in a call, from the host copy the stream kept, never from the storage."""
    rb = make_buffer(kind, 50, device)
    steps = np.repeat(np.arange(31, dtype=np.float32)[:, None], 3, axis=1)  # observation t is (t, t, t)
    obs, next_obs = steps[:-1].copy(), steps[1:].copy()
    obs[15] += 100  # a manual reset: row 15 does not continue row 14
    if kind == "dict":
        obs, next_obs = ({"x": o, MASK_KEY: (o[:, None, 1:] % 2) == 0} for o in (obs, next_obs))
    part = lambda a, lo, hi: {k: v[lo:hi] for k, v in a.items()} if isinstance(a, dict) else a[lo:hi]  # noqa: E731
    zeros, f = np.zeros((30, 1), np.int64), np.zeros(30, bool)
    for lo, hi in ((0, 10), (10, 11), (11, 30)):  # a trajectory, one row, the rest (with the reset inside)
        rb.add(part(obs, lo, hi), zeros[lo:hi], np.ones(hi - lo, np.float32), part(next_obs, lo, hi), f[lo:hi], f[lo:hi])
    expected = [t + 1 for t in range(29)] + [-1]
    expected[14] = -1
    assert rb.succ[:30].tolist() == expected


@pytest.mark.parametrize("kind", KINDS)
def test_the_storage_is_tensors_on_the_device_and_nbytes_counts_it(kind):
    host, dev = make_buffer(kind, 50, None), make_buffer(kind, 50, CPU)
    stores = [dev.frames] if isinstance(dev, FrameStackReplayBuffer) else (
        [*dev.obs.values(), *dev.next_obs.values()] if kind == "dict" else [dev.obs, dev.next_obs])
    assert all(isinstance(s, torch.Tensor) and s.device == CPU for s in stores)
    assert all(isinstance(s, np.ndarray) for s in ([host.frames] if isinstance(host, FrameStackReplayBuffer) else
                                                   [*(host.obs.values() if kind == "dict" else [host.obs])]))
    assert dev.nbytes == host.nbytes and dev.nbytes > sum(s.nbytes for s in stores)


@pytest.mark.filterwarnings("ignore::sqn_agents.frame_replay.FrameStackCapacityWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_checkpoints_stay_numpy_and_a_round_trip_continues_identically(kind):
    rng = np.random.default_rng(2)
    batches = list(rows(kind, rng, calls=90))
    host, dev = make_buffer(kind, 40, None), make_buffer(kind, 40, CPU)
    for args in batches[:60]:
        host.add(*args)
        dev.add(*args)
    state = dev.state_dict()
    assert all(type(v) is np.ndarray for v in state.values())  # no tensors: the checkpoint stays host-side
    reference = host.state_dict()
    assert state.keys() == reference.keys()
    for name, value in reference.items():
        assert state[name].dtype == value.dtype, name
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    loaded_dev, loaded_host = make_buffer(kind, 40, CPU), make_buffer(kind, 40, None)
    loaded_dev.load_state_dict(copy.deepcopy(state))  # a device state into a device buffer ...
    loaded_host.load_state_dict(copy.deepcopy(state))  # ... and into a host buffer: interchangeable
    for rb in (loaded_dev, loaded_host):
        rb.rng.bit_generator.state = host.rng.bit_generator.state
    for args in batches[60:]:  # the links keep growing the same way after the load
        for rb in (host, loaded_dev, loaded_host):
            rb.add(*args)
    np.testing.assert_array_equal(loaded_dev.succ, host.succ)
    want = host.sample(32, 3, GAMMA, True)
    assert_same_batch(loaded_dev.sample(32, 3, GAMMA, True), want, CPU)
    for name, got, expected in zip(Batch._fields, loaded_host.sample(32, 3, GAMMA, True), want, strict=True):
        for part in (got.keys() if isinstance(got, dict) else [None]) if got is not None else []:
            np.testing.assert_array_equal(got[part] if part else got, expected[part] if part else expected, name)


# ---------------------------------------------------------------------- through the learner
MASKED = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (3,), np.float32), "action_mask": gym.spaces.MultiBinary(4)})
AGENTS = {
    "vector_soft_n_step": (gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(3),
                           dict(n_step=3, soft_n_step=True)),
    "vector_one_step": (gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2), dict(n_step=1)),
    "masked_dict": (MASKED, gym.spaces.Discrete(4), dict(n_step=3)),
    "frame_stack_cnn": (gym.spaces.Box(0, 255, (4, 36, 36), np.uint8), gym.spaces.Discrete(3),
                        dict(n_step=3, soft_n_step=True, batch_size=8)),
    "dict_frame_stack_masked": (gym.spaces.Dict({"frames": gym.spaces.Box(0, 255, (4, 36, 36), np.uint8),
                                                 "action_mask": gym.spaces.MultiBinary(4)}),
                                gym.spaces.Discrete(4), dict(n_step=3, soft_n_step=True, batch_size=8)),
}


def frames_episode(rng: np.random.Generator, space: gym.spaces.Space, steps: int) -> list:
    """Observations of one episode; frame stacks overlap as an Atari env's do (one new frame per step),
    a Dict's parts are made part by part, and an action mask allows at least one action."""
    if isinstance(space, gym.spaces.Dict):
        parts = {name: frames_episode(rng, sub, steps) for name, sub in space.spaces.items()}
        return [{name: parts[name][t] for name in parts} for t in range(steps + 1)]
    if isinstance(space, gym.spaces.MultiBinary):
        masks = (rng.random((steps + 1, space.n)) < 0.5).astype(np.int8)
        masks[np.arange(steps + 1), rng.integers(space.n, size=steps + 1)] = 1
        return list(masks)
    if space.dtype == np.uint8:
        k = space.shape[0]
        frames = rng.integers(0, 256, (steps + k, *space.shape[1:]), dtype=np.uint8)
        return [frames[t : t + k] for t in range(steps + 1)]
    return [rng.uniform(-1, 1, space.shape).astype(np.float32) for _ in range(steps + 1)]


@pytest.mark.parametrize("case", sorted(AGENTS))
def test_learn_gives_the_same_losses_and_weights_as_the_host_replay(case):
    obs_space, act_space, overrides = AGENTS[case]
    config = {**dict(hidden_sizes=(16,), batch_size=16, buffer_size=300, learning_starts=16), **overrides}
    agents = [SQNAgent(obs_space, act_space, SQNConfig(**config, replay_on_device=on), device="cpu", seed=0)
              for on in (False, True)]
    rng = np.random.default_rng(0)
    metrics: list[list[dict]] = [[], []]
    for _ in range(3):  # episodes: each ends (terminated), the next starts from a fresh observation
        episode = frames_episode(rng, obs_space, 12)
        for t in range(12):
            action, reward = int(rng.integers(act_space.n)), float(rng.normal())
            if isinstance(obs_space, gym.spaces.Dict):
                action = int(rng.choice(np.flatnonzero(episode[t]["action_mask"])))
            for agent, seen in zip(agents, metrics, strict=True):
                agent.observe(episode[t], action, reward, episode[t + 1], t == 11, False)
                out = agent.learn()
                if out is not None:
                    seen.append(dict(out))
    assert len(metrics[0]) > 10 and metrics[0] == metrics[1]  # exactly equal, step by step
    host, dev = agents
    assert isinstance(dev.replay, FrameStackReplayBuffer) == ("frame_stack" in case)
    for a, b in zip((*host.q_nets.parameters(), host.log_alpha), (*dev.q_nets.parameters(), dev.log_alpha), strict=True):
        assert torch.equal(a, b)


def test_a_learner_checkpoint_with_a_device_replay_resumes_identically():
    obs_space, act_space, overrides = AGENTS["vector_soft_n_step"]
    config = SQNConfig(hidden_sizes=(16,), batch_size=16, buffer_size=300, learning_starts=16,
                       replay_on_device=True, **overrides)
    rng = np.random.default_rng(3)
    first = Learner(obs_space, act_space, config, device="cpu", seed=0)
    obs = rng.uniform(-1, 1, (41, 4)).astype(np.float32)
    first.add(obs[:-1], rng.integers(0, 3, (40, 1)), rng.normal(size=40).astype(np.float32), obs[1:],
              np.zeros(40, bool), np.zeros(40, bool))
    first.learn()
    state = copy.deepcopy(first.state_dict(include_replay=True))
    assert all(type(v) is np.ndarray for v in state["replay"].values())
    second = Learner(obs_space, act_space, config, device="cpu", seed=1)
    second.load_state_dict(state)
    assert isinstance(second.replay.obs, torch.Tensor)
    more = rng.uniform(-1, 1, (6, 4)).astype(np.float32)
    for learner in (first, second):
        learner.add(np.concatenate([obs[-1:], more[:-1]]), np.zeros((6, 1), np.int64), np.ones(6, np.float32), more,
                    np.zeros(6, bool), np.zeros(6, bool))
    assert dict(first.learn()) == dict(second.learn())
    for a, b in zip(first.q_nets.parameters(), second.q_nets.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_config_default_keeps_the_replay_in_numpy():
    learner = Learner(gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2), SQNConfig(), device="cpu")
    assert isinstance(learner.replay.obs, np.ndarray)
    on = Learner(gym.spaces.Box(0, 255, (4, 36, 36), np.uint8), gym.spaces.Discrete(2),
                 SQNConfig(replay_on_device=True, buffer_size=1000, batch_size=32), device="cpu")
    assert isinstance(on.replay, FrameStackReplayBuffer) and isinstance(on.replay.frames, torch.Tensor)
    assert on.replay.frames.device == on.device and on.replay.frames.dtype == torch.uint8


# ---------------------------------------------------------------------- "when it fits"
@pytest.mark.parametrize("kind", ["uniform", "frame_stack"])
def test_a_cuda_replay_larger_than_the_free_memory_is_refused_before_allocating(kind, monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2**30, 8 * 2**30))  # 1 GiB free of 8
    cls = ReplayBuffer if kind == "uniform" else FrameStackReplayBuffer
    size = 20_000 if kind == "uniform" else 200_000  # obs and next_obs stacks, or one 84x84 frame per transition
    need = 2 * size * 4 * 84 * 84 if kind == "uniform" else (size + size // 32) * 84 * 84
    with pytest.raises(ValueError, match=rf"needs {need / 2**30:.2f} GiB on cuda, which has 1.00 GiB free of 8.00 GiB; "
                                         r"use replay_on_device=False \(host memory\) or a smaller buffer_size"):
        cls(size, (4, 84, 84), np.uint8, 1, seed=0, device="cuda")


def test_the_cpu_never_asks_for_cuda_memory(monkeypatch):
    def refuse(device=None):
        raise AssertionError("mem_get_info called for a CPU replay")

    monkeypatch.setattr(torch.cuda, "mem_get_info", refuse)
    ReplayBuffer(100, (4,), np.float32, 1, device="cpu")
    FrameStackReplayBuffer(100, (4, 8, 8), np.uint8, 1, device="cpu")


def test_sqn_train_flag_runs_and_its_checkpoint_loads_with_the_replay_on_the_device(tmp_path):
    from sqn_agents.train import main, parse_args

    assert parse_args(["--config.replay-on-device"]).config.replay_on_device is True
    assert parse_args([]).config.replay_on_device is False
    run = tmp_path / "run"
    main(["--total-steps", "600", "--eval-every", "0", "--no-progress", "--output-dir", str(run),
          "--config.learning-starts", "300", "--config.hidden-sizes", "16", "--config.replay-on-device"])
    agent = SQNAgent.load(run / "checkpoint", device="cpu")
    assert agent.config.replay_on_device and isinstance(agent.replay.obs, torch.Tensor)
    assert len(agent.replay) == 600 and agent.replay.obs[:600].abs().sum() > 0  # the saved transitions came back


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (benchmarks/gpu_check.py runs these)")


@CUDA
@pytest.mark.filterwarnings("ignore::sqn_agents.frame_replay.FrameStackCapacityWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_on_cuda_the_batches_are_the_host_replays(kind):
    cuda = torch.device("cuda", torch.cuda.current_device())
    host, dev = make_buffer(kind, 40, None), make_buffer(kind, 40, cuda)
    for args in rows(kind, np.random.default_rng(1), calls=60):
        host.add(*args)
        dev.add(*args)
    for n_step, intermediate in ((1, False), (3, True)):
        got = dev.sample(32, n_step, GAMMA, intermediate)
        assert all(t.device == cuda for x in got if x is not None for t in (x.values() if isinstance(x, dict) else [x]))
        cpu = Batch(*(None if x is None else {k: v.cpu() for k, v in x.items()} if isinstance(x, dict) else x.cpu()
                      for x in got))
        assert_same_batch(cpu, host.sample(32, n_step, GAMMA, intermediate), CPU)


@CUDA
def test_on_cuda_a_replay_larger_than_the_device_is_refused():
    total = torch.cuda.mem_get_info()[1]
    with pytest.raises(ValueError, match="use replay_on_device=False"):
        FrameStackReplayBuffer(total // (84 * 84) + 1, (4, 84, 84), np.uint8, 1, device="cuda")
