"""Every observation space kind through the agent: shapes and dtypes stored, single and batched acting and
observing, learning, save / load with exact resume, network_factory, vector envs and bad observations."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.networks import PartTorso
from sqn_agents.observations import ObservationCodec
from sqn_agents.spaces import ActionCodec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from connect_four import ConnectFourEnv  # noqa: E402

Box, Discrete, MultiDiscrete, MultiBinary = gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary
SPACES = {
    "discrete": Discrete(5, start=2),
    "multidiscrete": MultiDiscrete([3, 4], start=[0, -1]),
    "multibinary": MultiBinary(4),
    "multibinary_2d": MultiBinary([2, 3]),
    "dict": gym.spaces.Dict({
        "image": Box(0, 255, (8, 8, 3), np.uint8),
        "vector": Box(-1, 1, (3,), np.float32),
        "cell": Discrete(4),
    }),
    "tuple": gym.spaces.Tuple((Discrete(3), Box(-2, 2, (2,), np.float32))),
    "nested": gym.spaces.Dict({"pos": gym.spaces.Tuple((Discrete(3), Discrete(4))), "flags": MultiBinary(2)}),
}
# what each stored part holds: shape per observation and dtype
STORED = {
    "discrete": {"obs": ((), np.int64)},
    "multidiscrete": {"obs": ((2,), np.int64)},
    "multibinary": {"obs": ((4,), np.int8)},
    "multibinary_2d": {"obs": ((2, 3), np.int8)},
    "dict": {"image": ((8, 8, 3), np.uint8), "vector": ((3,), np.float32), "cell": ((), np.int64)},
    "tuple": {"0": ((), np.int64), "1": ((2,), np.float32)},
    "nested": {"pos.0": ((), np.int64), "pos.1": ((), np.int64), "flags": ((2,), np.int8)},
}
SMALL = SQNConfig(learning_starts=16, batch_size=8, hidden_sizes=(16,), n_step=2)


def batch_of(space: gym.spaces.Space, n: int) -> object:
    return gym.vector.utils.concatenate(space, [space.sample() for _ in range(n)],
                                        gym.vector.utils.create_empty_array(space, n))


def feed(agent: SQNAgent, space: gym.spaces.Space, steps: int, seed: int) -> None:
    space.seed(seed)
    rng = np.random.default_rng(seed)
    obs = space.sample()
    for t in range(steps):
        nxt = space.sample()
        agent.observe(obs, agent.act(obs), float(rng.normal()), nxt, t % 7 == 6, False)
        agent.learn()
        obs = nxt


@pytest.mark.parametrize("kind", list(SPACES))
def test_each_space_is_stored_in_its_own_dtype_and_acts_single_and_batched(kind):
    space = SPACES[kind]
    space.seed(0)
    agent = SQNAgent(space, Discrete(3), SMALL, seed=0, device="cpu")
    replay = agent.replay
    assert {k: (v.shape[1:], v.dtype) for k, v in replay.obs.items()} == {k: (s, np.dtype(d)) for k, (s, d) in STORED[kind].items()}
    single = agent.act(space.sample())
    assert isinstance(single, int) and 0 <= single < 3
    obs = batch_of(space, 4)
    actions = agent.act(obs)
    assert actions.shape == (4,)
    agent.observe(obs, actions, np.ones(4), batch_of(space, 4), np.zeros(4, bool), np.zeros(4, bool))
    assert len(replay) == 4
    feed(agent, space, 24, seed=1)
    assert agent.gradient_steps > 0 and np.isfinite(agent.learn() or 0.0)


def test_discrete_parts_are_stored_as_zero_based_indices_and_one_hot_encoded():
    space = gym.spaces.Dict({"cell": Discrete(5, start=2), "dice": MultiDiscrete([2, 3])})
    agent = SQNAgent(space, Discrete(2), SMALL, seed=0, device="cpu")
    agent.observe({"cell": 6, "dice": [1, 2]}, 0, 0.0, {"cell": 2, "dice": [0, 0]}, False, False)
    assert agent.replay.obs["cell"][0] == 4 and agent.replay.next_obs["cell"][0] == 0
    assert agent.replay.obs["dice"][0].tolist() == [1, 2]
    one_hot = PartTorso(Discrete(5, start=2))(torch.tensor([4, 0]))
    np.testing.assert_array_equal(one_hot.numpy(), np.eye(5)[[4, 0]])
    blocks = PartTorso(MultiDiscrete([2, 3]))(torch.tensor([[1, 2], [0, 0]]))
    np.testing.assert_array_equal(blocks.numpy(), [[0, 1, 0, 0, 1], [1, 0, 1, 0, 0]])


@pytest.mark.parametrize("kind", ["dict", "nested", "discrete"])
def test_save_load_round_trip_and_exact_resume(kind, tmp_path):
    space = SPACES[kind]
    a = SQNAgent(space, Discrete(3), SMALL, seed=0, device="cpu")
    feed(a, space, 30, seed=2)
    a.save(tmp_path / "ckpt", include_replay=True)
    b = SQNAgent.load(tmp_path / "ckpt", device="cpu", observation_space=space, action_space=Discrete(3))
    for name in a.replay.obs:
        np.testing.assert_array_equal(b.replay.obs[name][: len(a.replay)], a.replay.obs[name][: len(a.replay)])
        assert b.replay.obs[name].dtype == a.replay.obs[name].dtype
    feed(a, space, 20, seed=3)
    feed(b, space, 20, seed=3)
    for pa, pb in zip(a.q_nets.parameters(), b.q_nets.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    obs = batch_of(space, 5)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))


def test_a_checkpoint_for_another_dict_space_is_refused(tmp_path):
    from sqn_agents.checkpoint import CheckpointError

    a = SQNAgent(SPACES["dict"], Discrete(3), SMALL, seed=0, device="cpu")
    a.save(tmp_path / "ckpt")
    other = gym.spaces.Dict({**SPACES["dict"].spaces, "cell": Discrete(6)})
    with pytest.raises(CheckpointError, match="was made for observation space"):
        SQNAgent.load(tmp_path / "ckpt", device="cpu", observation_space=other)


def test_network_factory_gets_the_parts_and_never_the_mask(tmp_path):
    seen = []

    class Net(torch.nn.Module):
        def __init__(self, space, n_out):
            super().__init__()
            seen.append(sorted(space.spaces))
            self.linear = torch.nn.Linear(6 * 7 * 2, n_out)

        def forward(self, obs):
            seen.append(sorted(obs))
            return self.linear(obs["board"].float().flatten(1))

    env = ConnectFourEnv()
    agent = SQNAgent(env.observation_space, env.action_space, SMALL, seed=0, device="cpu", network_factory=Net)
    obs, _ = env.reset(seed=0)
    agent.act(obs)
    assert seen == [["board"]] * 4  # two networks built, both run (the acting Q is their minimum)
    agent.save(tmp_path / "ckpt")
    loaded = SQNAgent.load(tmp_path / "ckpt", network_factory=Net, device="cpu")
    assert loaded.act(obs, deterministic=True) == agent.act(obs, deterministic=True)


def test_a_vector_env_of_dict_observations_next_step_autoreset():
    envs = gym.vector.SyncVectorEnv([ConnectFourEnv for _ in range(3)])
    agent = SQNAgent(envs.single_observation_space, envs.single_action_space, SMALL, seed=0, device="cpu")
    obs, _ = envs.reset(seed=0)
    for _ in range(40):
        actions = agent.act(obs)
        nxt, rewards, term, trunc, _ = envs.step(actions)
        agent.observe(obs, actions, rewards, nxt, term, trunc)
        agent.learn()
        obs = nxt
    boards = agent.replay.obs["board"][: len(agent.replay)]
    assert boards.dtype == np.uint8 and len(agent.replay) < 40 * 3  # reset steps were dropped
    assert agent.gradient_steps > 0


def test_same_step_autoreset_restores_the_final_dict_observation():
    space = SPACES["dict"]
    agent = SQNAgent(space, Discrete(3), SMALL, seed=0, device="cpu", autoreset_mode="same_step")
    obs, reset_obs, final = batch_of(space, 2), batch_of(space, 2), space.sample()
    final_obs = np.array([None, final], dtype=object)
    agent.observe(obs, np.array([0, 1]), np.zeros(2), reset_obs, np.array([False, True]), np.zeros(2, bool),
                  info={"final_obs": final_obs})
    np.testing.assert_array_equal(agent.replay.next_obs["image"][1], final["image"])
    np.testing.assert_array_equal(agent.replay.next_obs["image"][0], reset_obs["image"][0])


@pytest.mark.parametrize(
    ("kind", "obs", "error", "match"),
    [
        ("dict", {"image": np.zeros((8, 8, 3), np.uint8), "vector": np.zeros(3, np.float32)}, ValueError, "missing"),
        ("dict", [1, 2, 3], TypeError, "must be a dict"),
        ("discrete", 7, ValueError, "outside Discrete"),
        ("discrete", 2.5, ValueError, "whole numbers"),
        ("discrete", "a", TypeError, "expected integers"),
        ("multibinary", [0, 1, 2, 0], ValueError, "only 0 and 1"),
        ("multibinary", [0, 1, 1], ValueError, "has shape"),
        ("tuple", (1,), TypeError, "tuple of 2 parts"),
    ],
)
def test_bad_observations_are_refused_and_store_nothing(kind, obs, error, match):
    space = SPACES[kind]
    agent = SQNAgent(space, Discrete(3), SMALL, seed=0, device="cpu")
    with pytest.raises(error, match=match):
        agent.act(obs)
    with pytest.raises(error, match=match):
        agent.observe(obs, 0, 0.0, space.sample(), False, False)
    assert len(agent.replay) == 0


@pytest.mark.parametrize("space", [gym.spaces.Text(5), gym.spaces.Sequence(Discrete(3))])
def test_unsupported_observation_spaces_are_a_type_error(space):
    with pytest.raises(TypeError, match="observation_space must be gymnasium.spaces.Box, Discrete"):
        ObservationCodec(space, ActionCodec(Discrete(2)))
    with pytest.raises(TypeError, match="observation_space part"):
        ObservationCodec(gym.spaces.Dict({"x": space}), ActionCodec(Discrete(2)))


def test_an_actor_from_weights_and_a_list_sink_work_with_dict_observations():
    from sqn_agents.actor import Actor, TransitionIntake

    env = ConnectFourEnv()
    space, act_space = env.observation_space, env.action_space
    agent = SQNAgent(space, act_space, SMALL, seed=0, device="cpu")
    actor = Actor.from_weights(space, act_space, agent.learner.policy_weights(), hidden_sizes=SMALL.hidden_sizes)
    obs, _ = env.reset(seed=0)
    assert actor.act(obs, deterministic=True) == agent.act(obs, deterministic=True)

    class ListSink:
        def __init__(self):
            self.rows = []

        def add(self, *args, **kwargs):
            self.rows.append((args, kwargs))

    sink = ListSink()
    intake = TransitionIntake(space, act_space, sink)
    action = actor.act(obs)
    nxt, reward, term, trunc, _ = env.step(action)
    assert intake.observe(obs, action, reward, nxt, term, trunc) == 1
    (args, kwargs), = sink.rows
    assert set(args[0]) == {"board", "action_mask"} and args[0]["board"].dtype == np.uint8
    agent.learner.add(*args, **kwargs)  # what a remote actor ships, the learner stores
    assert len(agent.replay) == 1
    np.testing.assert_array_equal(agent.replay.next_obs["board"][0], nxt["board"])


def test_a_discrete_observation_learns_exactly_like_its_one_hot_box():
    """One-hot on the device is the same function as FlattenObservation's one-hot Box: same weights, same updates."""
    n, cfg = 6, SQNConfig(learning_starts=16, batch_size=8, hidden_sizes=(16,), n_step=2)
    discrete = SQNAgent(Discrete(n), Discrete(3), cfg, seed=0, device="cpu")
    one_hot = SQNAgent(Box(0, 1, (n,), np.float32), Discrete(3), cfg, seed=0, device="cpu")
    rng = np.random.default_rng(0)
    s = 0
    for t in range(40):
        s2, a, r = int(rng.integers(n)), discrete.act(s), float(rng.normal())
        assert one_hot.act(np.eye(n, dtype=np.float32)[s]) == a
        discrete.observe(s, a, r, s2, t % 9 == 8, False)
        one_hot.observe(np.eye(n, dtype=np.float32)[s], a, r, np.eye(n, dtype=np.float32)[s2], t % 9 == 8, False)
        discrete.learn()
        one_hot.learn()
        s = s2
    assert discrete.gradient_steps == one_hot.gradient_steps > 0
    for pd, pb in zip(discrete.q_nets.parameters(), one_hot.q_nets.parameters(), strict=True):
        torch.testing.assert_close(pd, pb, rtol=1e-5, atol=1e-6)
