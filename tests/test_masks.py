"""Legal-action masks through the agent: from a Dict observation and from explicit arguments, in acting, in the
stored transitions (n-step: the bootstrap state's mask), in learn()'s target and entropy, and bad masks."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.observations import MASK_KEY

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from connect_four import ConnectFourEnv  # noqa: E402

Box, Discrete, MultiDiscrete, MultiBinary = gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary
SMALL = SQNConfig(learning_starts=16, batch_size=8, hidden_sizes=(16,))
MASKED = gym.spaces.Dict({"x": Box(-1, 1, (3,), np.float32), "action_mask": MultiBinary(5)})


def obs_with(mask, x=None) -> dict:
    return {"x": np.zeros(3, np.float32) if x is None else x, "action_mask": np.asarray(mask, np.int8)}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), deterministic=st.booleans(), batch=st.integers(1, 6))
def test_the_agent_never_acts_illegally(seed, deterministic, batch):
    rng = np.random.default_rng(seed)
    agent = SQNAgent(MASKED, Discrete(5, start=1), SMALL, seed=seed % 1000, device="cpu")
    mask = rng.random((batch, 5)) < 0.4
    mask[np.arange(batch), rng.integers(0, 5, batch)] = True
    x = rng.uniform(-1, 1, (batch, 3)).astype(np.float32)
    actions = agent.act({"x": x, "action_mask": mask.astype(np.int8)}, deterministic=deterministic)
    assert mask[np.arange(batch), actions - 1].all()
    single = agent.act(obs_with(mask[0], x[0]), deterministic=deterministic)
    assert mask[0, single - 1]


def test_explicit_masks_act_and_are_stored_like_masks_in_the_observation():
    space = Box(-1, 1, (3,), np.float32)
    agent = SQNAgent(space, Discrete(4), SMALL, seed=0, device="cpu", action_mask=True)
    o = np.zeros(3, np.float32)
    for _ in range(20):
        assert agent.act(o, action_mask=np.array([0, 0, 1, 0], np.int8)) == 2
    agent.observe(o, 2, 1.0, o, False, False, action_mask=[0, 0, 1, 0], next_action_mask=[1, 1, 0, 0])
    assert agent.replay.obs[MASK_KEY][0, 0].tolist() == [False, False, True, False]
    assert agent.replay.next_obs[MASK_KEY][0, 0].tolist() == [True, True, False, False]
    batch = np.stack([o, o])
    masks = np.array([[1, 0, 0, 0], [0, 0, 0, 1]], np.int8)
    np.testing.assert_array_equal(agent.act(batch, action_mask=masks), [0, 3])
    with pytest.raises(ValueError, match="built with action_mask=True: pass act"):
        agent.act(o)
    with pytest.raises(ValueError, match="pass next_action_mask"):
        agent.observe(o, 2, 1.0, o, False, False, action_mask=[0, 0, 1, 0])
    assert len(agent.replay) == 1


def test_taxi_learns_with_its_info_masks_and_never_moves_illegally():
    env = gym.make("Taxi-v4")
    agent = SQNAgent(env.observation_space, env.action_space, SMALL, seed=0, device="cpu", action_mask=True)
    obs, info = env.reset(seed=0)
    for _ in range(100):
        action = agent.act(obs, action_mask=info["action_mask"])
        assert info["action_mask"][action] == 1
        nxt, reward, term, trunc, next_info = env.step(action)
        agent.observe(obs, action, reward, nxt, term, trunc, action_mask=info["action_mask"],
                      next_action_mask=next_info["action_mask"])
        agent.learn()
        obs, info = (nxt, next_info) if not (term or trunc) else env.reset()
    assert agent.gradient_steps > 0 and agent.replay.obs["obs"].dtype == np.int64


@pytest.mark.parametrize(
    "form",
    ["padded", "concatenated", "tuple"],
)
def test_multidiscrete_masks_in_every_form_give_the_same_table(form):
    action_space = MultiDiscrete([3, 2])
    agent = SQNAgent(Box(-1, 1, (2,), np.float32), action_space, SMALL, seed=0, device="cpu", action_mask=True)
    per_component = (np.array([0, 1, 1]), np.array([1, 0]))
    given_mask = {
        "padded": np.array([[0, 1, 1], [1, 0, 1]]),  # the padded entry is ignored
        "concatenated": np.concatenate(per_component),
        "tuple": per_component,
    }[form]
    o = np.zeros(2, np.float32)
    agent.observe(o, [1, 0], 0.0, o, False, False, action_mask=given_mask, next_action_mask=given_mask)
    assert agent.replay.obs[MASK_KEY][0].tolist() == [[False, True, True], [True, False, False]]
    for _ in range(10):
        a = agent.act(o, action_mask=given_mask)
        assert a[0] in (1, 2) and a[1] == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"action_mask": [1, 0, 1]}, ValueError, "has shape"),
        ({"action_mask": np.array([1.0, 0, 1, 0, 1])}, TypeError, "dtype float64"),
        ({"action_mask": [1, 0, 2, 0, 1]}, ValueError, "only 0 and 1"),
        ({"action_mask": [0, 0, 0, 0, 0]}, ValueError, "allows no action"),
        ({"action": 1}, ValueError, "illegal under its state's action mask"),
        ({"next_action_mask": [0, 0, 0, 0, 0]}, ValueError, "not terminated"),
    ],
)
def test_bad_masks_are_refused_and_store_nothing(kwargs, error, match):
    agent = SQNAgent(MASKED, Discrete(5), SMALL, seed=0, device="cpu")
    mask, next_mask = kwargs.get("action_mask", [1, 0, 1, 0, 1]), kwargs.get("next_action_mask", [1, 1, 1, 1, 1])
    before = copy.deepcopy(agent.replay.state_dict())
    with pytest.raises(error, match=match):
        agent.observe({"x": np.zeros(3, np.float32), "action_mask": np.asarray(mask)}, kwargs.get("action", 0), 0.0,
                      obs_with(next_mask), False, False)
    assert len(agent.replay) == 0 and agent.env_steps == 0
    for k, v in agent.replay.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    if "action" not in kwargs and "next_action_mask" not in kwargs:
        with pytest.raises(error, match=match):
            agent.act({"x": np.zeros(3, np.float32), "action_mask": np.asarray(mask)})


def test_an_explicit_mask_next_to_one_in_the_observation_is_refused():
    agent = SQNAgent(MASKED, Discrete(5), SMALL, seed=0, device="cpu")
    with pytest.raises(ValueError, match="hold 'action_mask' already"):
        agent.act(obs_with([1, 1, 1, 1, 1]), action_mask=[1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="already has an 'action_mask' entry"):
        SQNAgent(MASKED, Discrete(5), SMALL, device="cpu", action_mask=True)
    with pytest.raises(ValueError, match="'action_mask' space"):
        SQNAgent(gym.spaces.Dict({"x": MASKED["x"], "action_mask": MultiBinary(4)}), Discrete(5), SMALL, device="cpu")


def test_a_terminal_state_without_legal_actions_is_stored_with_every_action_legal():
    agent = SQNAgent(MASKED, Discrete(5), SMALL, seed=0, device="cpu")
    agent.observe(obs_with([1, 1, 0, 0, 0]), 1, 1.0, obs_with([0, 0, 0, 0, 0]), True, False)
    assert agent.replay.next_obs[MASK_KEY][0, 0].all()


def test_a_finished_sub_env_in_a_batch_gets_an_action_but_a_single_empty_state_is_refused():
    agent = SQNAgent(MASKED, Discrete(5), SMALL, seed=0, device="cpu")
    batch = {"x": np.zeros((2, 3), np.float32), "action_mask": np.array([[0, 0, 0, 0, 0], [0, 0, 0, 1, 0]], np.int8)}
    assert agent.act(batch)[1] == 3
    with pytest.raises(ValueError, match="allows no action"):
        agent.act(obs_with([0, 0, 0, 0, 0]))


def test_n_step_returns_bootstrap_with_the_mask_of_the_bootstrap_state():
    agent = SQNAgent(MASKED, Discrete(5), SQNConfig(n_step=3, hidden_sizes=(8,)), seed=0, device="cpu")
    masks = [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]]
    xs = [np.full(3, i / 10, np.float32) for i in range(4)]
    for t in range(3):
        agent.observe(obs_with(masks[t], xs[t]), t, 1.0, obs_with(masks[t + 1], xs[t + 1]), False, False)
    agent.replay.rng = np.random.default_rng(0)
    batch = agent.replay.sample(64, n_step=3, gamma=0.9)
    first = batch.obs["x"][:, 0] == 0.0  # rows starting at t = 0 reach t = 2, whose next state has masks[3]
    assert first.any()
    assert (batch.next_obs[MASK_KEY][first, 0] == np.array(masks[3], bool)).all()


def _np_log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("munchausen", [0.0, 0.9])
def test_learn_uses_the_masked_target_and_entropy(munchausen):
    """q_loss and the temperature gradient of one step recomputed in numpy from the sampled batch."""
    cfg = SQNConfig(learning_starts=32, batch_size=32, n_step=2, gamma=0.9, munchausen_scale=munchausen,
                    munchausen_clip=-0.5, hidden_sizes=(16,), initial_alpha=0.7, target_entropy_ratio=0.8)
    agent = SQNAgent(MASKED, Discrete(5), cfg, device="cpu", seed=0)
    rng = np.random.default_rng(0)

    def random_obs():
        mask = rng.random(5) < 0.5
        mask[rng.integers(5)] = True
        return obs_with(mask.astype(np.int8), rng.uniform(-1, 1, 3).astype(np.float32))

    o = random_obs()
    for t in range(32):
        n = random_obs()
        legal = np.flatnonzero(o["action_mask"])
        agent.observe(o, int(rng.choice(legal)), float(rng.normal()), n, t % 9 == 8, False)
        o = random_obs() if t % 9 == 8 else n
    online, target = copy.deepcopy(agent.q_nets), copy.deepcopy(agent.target_nets)
    alpha, log_alpha = agent.alpha.item(), agent.log_alpha.item()
    sampled = []
    sample = agent.replay.sample
    agent.replay.sample = lambda *a, **k: sampled.append(sample(*a, **k)) or sampled[-1]
    metrics = agent.learn()
    b = sampled[0]

    def qi(net, obs):
        with torch.no_grad():
            return net({k: torch.as_tensor(v) for k, v in obs.items()}).numpy().astype(np.float64)

    def soft(qt, mask):
        lp = _np_log_softmax(np.where(mask, qt / alpha, -np.inf))
        return lp, alpha * np.log(np.where(mask, np.exp(qt / alpha - (qt / alpha).max(-1, keepdims=True)), 0).sum(-1)) \
            + alpha * (qt / alpha).max(-1)

    next_mask, mask = b.next_obs[MASK_KEY], b.obs[MASK_KEY]
    _, v = soft(np.minimum(qi(target[0], b.next_obs), qi(target[1], b.next_obs)), next_mask)
    y = b.rewards[:, None] + (b.discounts * (1 - b.terminated))[:, None] * v
    if munchausen:
        lp_now, _ = soft(np.minimum(qi(target[0], b.obs), qi(target[1], b.obs)), mask)
        y = y + munchausen * np.clip(np.take_along_axis(alpha * lp_now, b.actions[:, :, None], -1)[..., 0], -0.5, 0)
    loss = sum(((np.take_along_axis(qi(net, b.obs), b.actions[:, :, None], -1)[..., 0] - y) ** 2).mean() for net in online)
    assert metrics["q_loss"] == pytest.approx(loss, rel=1e-4)

    # the entropy is that of the online nets' policy (before the step) over legal actions, the target
    # ratio * log n_legal(s)
    lp, _ = soft(np.minimum(qi(online[0], b.obs), qi(online[1], b.obs)), mask)
    lp = np.where(mask, lp, 0.0)
    entropy = -(np.exp(lp) * lp).sum(-1)  # (B, 1)
    assert metrics["entropy"] == pytest.approx(entropy.sum(1).mean(), rel=1e-4)
    gap = (entropy.sum(1) - 0.8 * np.log(mask.sum(-1)).sum(1)).mean()
    assert metrics["alpha_loss"] == pytest.approx(log_alpha * gap, rel=1e-4)


def test_connect_four_masks_come_from_the_observation_and_no_move_is_illegal():
    env = ConnectFourEnv()
    agent = SQNAgent(env.observation_space, env.action_space, SMALL, seed=0, device="cpu")
    obs, _ = env.reset(seed=0)
    for _ in range(200):  # the env raises on an illegal move
        action = agent.act(obs)
        nxt, reward, term, trunc, _ = env.step(action)
        agent.observe(obs, action, reward, nxt, term, trunc)
        agent.learn()
        obs = env.reset()[0] if term or trunc else nxt
    assert agent.replay.obs["board"].dtype == np.uint8 and agent.gradient_steps > 0


def test_soft_n_step_takes_the_entropy_of_the_intermediate_states_over_their_legal_actions():
    """With soft_n_step the states on the way carry their masks: with one legal action everywhere there is no
    entropy bonus, and the target is the discounted rewards plus the target Q of the one legal action."""
    cfg = SQNConfig(learning_starts=3, batch_size=3, n_step=3, soft_n_step=True, hidden_sizes=(8,), gamma=0.9)
    agent = SQNAgent(MASKED, Discrete(5), cfg, seed=0, device="cpu")
    one = [0, 0, 1, 0, 0]
    xs = [np.full(3, i / 10, np.float32) for i in range(4)]
    for t in range(3):
        agent.observe(obs_with(one, xs[t]), 2, float(t), obs_with(one, xs[t + 1]), False, False)
    sampled = []
    sample = agent.replay.sample
    agent.replay.sample = lambda *a, **k: sampled.append(sample(*a, **k)) or sampled[-1]
    online, target = copy.deepcopy(agent.q_nets), copy.deepcopy(agent.target_nets)
    metrics = agent.learn()
    b = sampled[0]
    assert (b.mid_obs[MASK_KEY][..., 0, :] == np.array(one, bool)).all() and (b.mid_discounts > 0).any()

    def q(net, obs):
        with torch.no_grad():
            return net({k: torch.as_tensor(v) for k, v in obs.items()})[:, 0, 2].double().numpy()

    y = b.rewards + b.discounts * (1 - b.terminated) * np.minimum(q(target[0], b.next_obs), q(target[1], b.next_obs))
    loss = sum(((q(net, b.obs) - y) ** 2).mean() for net in online)
    assert metrics["q_loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["entropy"] == 0.0


def test_the_distributed_mode_refuses_dict_observations_and_masks_before_starting_anything():
    from sqn_agents.distributed import DistributedSQN

    for agent in (SQNAgent(MASKED, Discrete(5), SMALL, device="cpu"),
                  SQNAgent(Box(-1, 1, (3,), np.float32), Discrete(5), SMALL, device="cpu", action_mask=True)):
        with pytest.raises(TypeError, match="one Box observation and no action masks"):
            DistributedSQN(agent, ConnectFourEnv)
