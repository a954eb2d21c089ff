"""The SQNAgent contract: shapes, dtypes, single vs batched calls, cadence, autoreset, modes and errors."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from sqn_agents import SQNAgent, SQNConfig

SMALL = SQNConfig(hidden_sizes=(32,), batch_size=8, buffer_size=1000, learning_starts=16)


class CountingEnv(gym.Env):
    """Observation [episode, t]; episodes last `length` steps and end by termination or truncation."""

    def __init__(self, length: int = 3, truncate: bool = False):
        self.observation_space = gym.spaces.Box(0, 1e6, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.length, self.truncate, self.episode, self.t = length, truncate, -1, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return np.array([self.episode, 0], np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        obs = np.array([self.episode, self.t], np.float32)
        return obs, 1.0, done and not self.truncate, done and self.truncate, {}


@pytest.fixture
def cartpole():
    return gym.make("CartPole-v1")


def test_single_act_returns_an_action_of_the_space(cartpole):
    agent = SQNAgent(cartpole.observation_space, cartpole.action_space, SMALL, seed=0, device="cpu")
    obs, _ = cartpole.reset(seed=0)
    action = agent.act(obs)
    assert isinstance(action, int) and cartpole.action_space.contains(action)
    greedy = agent.act(obs, deterministic=True)
    assert all(agent.act(obs, deterministic=True) == greedy for _ in range(5))


def test_deterministic_act_is_argmax_of_min_twin_q(cartpole):
    agent = SQNAgent(cartpole.observation_space, cartpole.action_space, SMALL, seed=1, device="cpu")
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    with torch.no_grad():
        x = torch.as_tensor(obs)
        q = torch.minimum(agent.q_nets[0](x), agent.q_nets[1](x))[:, 0]
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), q.argmax(-1).numpy())


def test_sampling_follows_the_boltzmann_policy():
    space = gym.spaces.Box(-1, 1, (1,), np.float32)
    agent = SQNAgent(space, gym.spaces.Discrete(3), SMALL, seed=0, device="cpu")
    obs = np.zeros((20000, 1), np.float32)
    with torch.no_grad():
        q = torch.minimum(agent.q_nets[0](torch.as_tensor(obs[:1])), agent.q_nets[1](torch.as_tensor(obs[:1])))
        agent.log_alpha.fill_(np.log(0.05))
        expected = torch.softmax(q[0, 0] / 0.05, -1).numpy()
    counts = np.bincount(agent.act(obs), minlength=3) / len(obs)
    np.testing.assert_allclose(counts, expected, atol=0.015)


def test_batched_act_and_observe_with_start_offset():
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    act_space = gym.spaces.Discrete(4, start=-2)
    agent = SQNAgent(obs_space, act_space, SMALL, seed=0, device="cpu", autoreset_mode="disabled")
    obs = np.zeros((5, 3), np.float32)
    actions = agent.act(obs)
    assert actions.shape == (5,) and all(act_space.contains(int(a)) for a in actions)
    agent.observe(obs, actions, np.ones(5), obs, np.zeros(5, bool), np.zeros(5, bool))
    assert agent.env_steps == 5 and len(agent.replay) == 5
    np.testing.assert_array_equal(agent.replay.actions[:5, 0], actions + 2)  # stored zero-based


def test_terminated_and_truncated_are_stored_apart():
    agent = SQNAgent(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(2), SMALL, device="cpu")
    o = np.zeros(2, np.float32)
    agent.observe(o, 0, 1.0, o, terminated=False, truncated=True)
    agent.observe(o, 1, 1.0, o, terminated=True, truncated=False)
    assert agent.replay.terminated[:2].tolist() == [0.0, 1.0]  # truncated still bootstraps
    assert agent.replay.truncated[:2].tolist() == [1.0, 0.0]


def test_uint8_observations_stay_uint8_in_replay():
    space = gym.spaces.Box(0, 255, (6, 6, 2), np.uint8)  # channels-last, not a frame stack
    agent = SQNAgent(space, gym.spaces.Discrete(2), SMALL, device="cpu")
    o = np.full((6, 6, 2), 200, np.uint8)
    agent.observe(o, 1, 0.0, o, False, False)
    assert agent.replay.obs.dtype == np.uint8 and agent.replay.obs[0].max() == 200


def test_learn_cadence_follows_warmup_train_freq_and_gradient_steps():
    cfg = SQNConfig(hidden_sizes=(16,), batch_size=4, buffer_size=100, learning_starts=10, train_freq=2, gradient_steps=3)
    agent = SQNAgent(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(2), cfg, seed=0, device="cpu")
    o = np.zeros(2, np.float32)
    for step in range(1, 21):
        agent.observe(o, 0, 1.0, o, False, False)
        metrics = agent.learn()
        if step < 10:
            assert metrics == {}
    # updates at steps 10, 12, ..., 20 -> 6 updates of 3 gradient steps
    assert agent.updates == 6 and agent.gradient_steps == 18
    assert set(metrics) == {"q_loss", "alpha", "alpha_loss", "entropy", "mean_q"}
    assert all(isinstance(v, float) for v in metrics.values())


def test_fixed_alpha_does_not_move():
    cfg = SQNConfig(hidden_sizes=(16,), batch_size=4, buffer_size=100, learning_starts=4, autotune_alpha=False, initial_alpha=0.3)
    agent = SQNAgent(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(2), cfg, seed=0, device="cpu")
    o = np.zeros(2, np.float32)
    for _ in range(10):
        agent.observe(o, 1, 1.0, o, False, False)
        agent.learn()
    assert agent.alpha.item() == pytest.approx(0.3)


def _stored_transitions(agent):
    n = len(agent.replay)
    return agent.replay.obs[:n], agent.replay.next_obs[:n]


@pytest.mark.parametrize("mode", [gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("truncate", [False, True])
def test_vector_env_autoreset_stores_only_real_transitions(mode, truncate):
    envs = gym.vector.SyncVectorEnv(
        [lambda n=n: CountingEnv(length=3 + n, truncate=truncate) for n in range(3)], autoreset_mode=mode
    )
    agent = SQNAgent(envs.single_observation_space, envs.single_action_space, SMALL, seed=0, device="cpu",
                     autoreset_mode=envs.metadata["autoreset_mode"])
    obs, _ = envs.reset(seed=0)
    for _ in range(20):
        actions = agent.act(obs)
        next_obs, rewards, term, trunc, info = envs.step(actions)
        agent.observe(obs, actions, rewards, next_obs, term, trunc, info=info)
        obs = next_obs
    o, o2 = _stored_transitions(agent)
    # every stored transition is one real step of one episode: same episode id, t -> t + 1
    np.testing.assert_array_equal(o2[:, 0], o[:, 0])
    np.testing.assert_array_equal(o2[:, 1], o[:, 1] + 1)
    expected = 60 if mode == gym.vector.AutoresetMode.SAME_STEP else 60 - sum(20 // (4 + n) for n in range(3))
    assert agent.env_steps == expected


def test_same_step_mode_without_info_is_an_error():
    agent = SQNAgent(gym.spaces.Box(0, 9, (2,), np.float32), gym.spaces.Discrete(3), SMALL, device="cpu",
                     autoreset_mode="same_step")
    o = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="pass info=info"):
        agent.observe(o, np.zeros(2, int), np.zeros(2), o, np.array([True, False]), np.zeros(2, bool))
    assert len(agent.replay) == 0


def test_evaluation_mode_is_greedy_and_refuses_to_learn(cartpole):
    agent = SQNAgent(cartpole.observation_space, cartpole.action_space, SMALL, seed=0, device="cpu")
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    with agent.evaluating():
        np.testing.assert_array_equal(agent.act(obs), agent.act(obs, deterministic=True))
        with pytest.raises(RuntimeError, match="evaluation mode"):
            agent.observe(obs[0], 0, 1.0, obs[0], False, False)
        with pytest.raises(RuntimeError, match="evaluation mode"):
            agent.learn()
    assert agent.training


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def agent(cartpole):
    return SQNAgent(cartpole.observation_space, cartpole.action_space, SMALL, seed=0, device="cpu")


def test_wrong_observation_shape_names_expected_shapes(agent):
    with pytest.raises(ValueError, match=r"obs has shape \(3,\); expected \(4,\) for one observation or \(batch, 4\)"):
        agent.act(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"next_obs has shape \(2, 4\)"):
        agent.observe(np.zeros(4), 0, 1.0, np.zeros((2, 4)), False, False)


def test_action_outside_the_space(agent):
    o = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"action 2 is outside the action space Discrete\(2\)"):
        agent.observe(o, 2, 1.0, o, False, False)
    with pytest.raises(ValueError, match="integer-valued"):
        agent.observe(o, 0.5, 1.0, o, False, False)
    with pytest.raises(ValueError, match=r"action has shape \(3,\), which does not match obs"):
        agent.observe(o, [0, 1, 0], 1.0, o, False, False)
    assert len(agent.replay) == 0


@pytest.mark.parametrize("reward", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_reward_is_refused(agent, reward):
    o = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="reward must be finite"):
        agent.observe(o, 0, reward, o, False, False)
    assert len(agent.replay) == 0 and agent.env_steps == 0


def test_non_finite_observation_is_refused(agent):
    bad = np.array([0, np.nan, 0, 0], np.float32)
    with pytest.raises(ValueError, match="obs contains NaN"):
        agent.act(bad)
    with pytest.raises(ValueError, match="next_obs contains NaN"):
        agent.observe(np.zeros(4), 0, 1.0, bad, False, False)


def test_unsupported_spaces_are_refused():
    with pytest.raises(TypeError, match="action_space must be gymnasium.spaces.Discrete or MultiDiscrete"):
        SQNAgent(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (1,)))
    with pytest.raises(TypeError, match="observation_space must be gymnasium.spaces.Box"):  # Discrete is supported now
        SQNAgent(gym.spaces.Text(3), gym.spaces.Discrete(2))
    with pytest.raises(TypeError, match="config must be an SQNConfig"):
        SQNAgent(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2), {"gamma": 0.9})


def test_custom_network_factory_is_used_and_reloaded(tmp_path):
    calls = []

    def factory(space, n_out):
        calls.append(n_out)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(space.shape)), n_out))

    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    agent = SQNAgent(space, gym.spaces.Discrete(5), SMALL, seed=0, network_factory=factory, device="cpu")
    assert calls == [5, 5]
    obs = np.ones((4, 3), np.float32)
    agent.save(tmp_path / "ckpt")
    loaded = SQNAgent.load(tmp_path / "ckpt", network_factory=factory, device="cpu")
    np.testing.assert_array_equal(loaded.act(obs, deterministic=True), agent.act(obs, deterministic=True))


def test_manual_vector_reset_forgets_pending_autoreset():
    envs = gym.vector.SyncVectorEnv([lambda: CountingEnv(length=2) for _ in range(2)])
    agent = SQNAgent(envs.single_observation_space, envs.single_action_space, SMALL, seed=0, device="cpu")
    obs, _ = envs.reset(seed=0)
    for _ in range(2):  # the second step ends both episodes
        actions = agent.act(obs)
        next_obs, rewards, term, trunc, _ = envs.step(actions)
        agent.observe(obs, actions, rewards, next_obs, term, trunc)
        obs = next_obs
    assert term.all() and agent.env_steps == 4
    obs, _ = envs.reset(seed=1)  # a manual reset: the next step is a real transition
    agent.vector_env_reset()
    actions = agent.act(obs)
    next_obs, rewards, term, trunc, _ = envs.step(actions)
    agent.observe(obs, actions, rewards, next_obs, term, trunc)
    assert agent.env_steps == 6
