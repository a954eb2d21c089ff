"""n-step returns: the replays' successor links and sampled returns against a brute-force reference
over the whole history of transitions, values worked out by hand, and the target through ``learn()``.

Every observation encodes (stream, step) so a sampled row names the transition it came from.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from sqn_agents import SQNAgent, SQNConfig, soft_q
from sqn_agents.frame_replay import FrameStackReplayBuffer
from sqn_agents.replay import ReplayBuffer, n_step_returns

GAMMA = 0.9


# ---------------------------------------------------------------------- the pure function
def test_n_step_returns_by_hand():
    # rows 0 -> 1 -> 2 (then the episode ends at 2), row 3 -> nothing yet
    succ = np.array([1, 2, -1, -1])
    rewards = np.array([1.0, 2.0, 4.0, 8.0], np.float32)
    last, ret, disc = n_step_returns(succ, rewards, np.array([0, 1, 2, 3]), 3, GAMMA)
    assert last.tolist() == [2, 2, 2, 3]
    np.testing.assert_allclose(ret, [1 + 0.9 * 2 + 0.81 * 4, 2 + 0.9 * 4, 4, 8], rtol=1e-6)
    np.testing.assert_allclose(disc, [0.9**3, 0.9**2, 0.9, 0.9], rtol=1e-6)
    last, ret, disc = n_step_returns(succ, rewards, np.array([0]), 2, GAMMA)
    assert last.tolist() == [1] and ret[0] == pytest.approx(1 + 0.9 * 2) and disc[0] == pytest.approx(0.81)


# ---------------------------------------------------------------------- a history of transitions
class History:
    """Transitions of several interleaved streams, written to a replay and kept in full for the reference."""

    def __init__(self, frames: int = 0) -> None:
        self.frames = frames  # 0: vector observations (stream, step); K: K-frame stacks of 3x3 frames
        self.rows: list[dict] = []  # in write order (= logical index)

    def obs(self, stream: int, step: int, episode: int) -> np.ndarray:
        if not self.frames:
            return np.array([stream, episode, step], np.float32)
        # frame j of the stack at step t is frame (t - K + 1 + j) of the episode; frames before the
        # episode's first repeat its first frame (a reset stack)
        ids = np.maximum(np.arange(step - self.frames + 1, step + 1), 0)
        return np.stack([np.full((3, 3), (stream * 50 + episode * 7 + i) % 250 + 1, np.uint8) for i in ids])

    def stream_steps(self, rng: np.random.Generator, streams: int, calls: int, p_end: float = 0.15):
        """Yield (env_ids, obs, actions, rewards, next_obs, terminated, truncated) batches; streams skip calls
        at random (as NEXT_STEP-dropped rows do) and episodes end by termination or truncation."""
        state = {s: [0, 0] for s in range(streams)}  # step, episode
        for _ in range(calls):
            ids = np.flatnonzero(rng.random(streams) < 0.8)
            if not len(ids):
                continue
            batch = []
            for s in ids:
                step, ep = state[s]
                end = rng.random() < p_end
                term = end and rng.random() < 0.5
                trunc = end and not term
                row = dict(stream=int(s), step=step, episode=ep, reward=float(rng.integers(1, 10)),
                           terminated=term, truncated=trunc,
                           obs=self.obs(s, step, ep), next_obs=self.obs(s, step + 1, ep))
                batch.append(row)
                state[s] = [0, ep + 1] if end else [step + 1, ep]
            self.rows.extend(batch)
            yield (np.array([r["stream"] for r in batch]), np.stack([r["obs"] for r in batch]),
                   np.zeros((len(batch), 1), np.int64), np.array([r["reward"] for r in batch], np.float32),
                   np.stack([r["next_obs"] for r in batch]), np.array([r["terminated"] for r in batch]),
                   np.array([r["truncated"] for r in batch]))

    def reference(self, logical: int, n: int) -> tuple[float, float, np.ndarray, float]:
        """The n-step return of row ``logical`` from the full history: (return, discount, next_obs, terminated)."""
        row, ret, m, i = self.rows[logical], 0.0, 0, logical
        while True:
            ret += GAMMA**m * row["reward"]
            m += 1
            if m == n or row["terminated"] or row["truncated"]:
                break
            later = [j for j in range(i + 1, len(self.rows))
                     if self.rows[j]["stream"] == row["stream"] and self.rows[j]["episode"] == row["episode"]]
            if not later:
                break  # the next step is not stored yet
            i = later[0]
            row = self.rows[i]
        return ret, GAMMA**m, row["next_obs"], float(row["terminated"])


def make_buffer(kind: str, capacity: int, frames: int):
    if kind == "uniform":
        shape, dtype = ((frames, 3, 3), np.uint8) if frames else ((3,), np.float32)
        return ReplayBuffer(capacity, shape, dtype, 1, seed=0)
    return FrameStackReplayBuffer(capacity, (frames, 3, 3), np.uint8, 1, seed=0)


def valid_logicals(rb) -> np.ndarray:
    if isinstance(rb, FrameStackReplayBuffer):
        return np.arange(rb.tail, rb.added)
    return np.arange(rb.added - rb.size, rb.added)


def check_every_row(rb, history: History, n: int) -> None:
    """Every valid row's sampled n-step return equals the reference (a full pass over the buffer)."""
    logical = valid_logicals(rb)
    last, ret, disc = n_step_returns(rb.succ, rb.rewards, logical, n, GAMMA)
    for i, lg in enumerate(logical):
        r_ref, d_ref, next_ref, term_ref = history.reference(int(lg), n)
        assert ret[i] == pytest.approx(r_ref, rel=1e-6), f"row {lg}"
        assert disc[i] == pytest.approx(d_ref, rel=1e-6), f"row {lg}"
        slot = int(last[i]) % rb.capacity
        next_obs = rb._stacks(rb.next_frames[slot : slot + 1])[0] if isinstance(rb, FrameStackReplayBuffer) \
            else rb.next_obs[slot]
        np.testing.assert_array_equal(next_obs, next_ref, err_msg=f"row {lg}")
        assert rb.terminated[slot] == term_ref


@pytest.mark.filterwarnings("ignore::sqn_agents.frame_replay.FrameStackCapacityWarning")  # a tiny ring, 3 streams
@pytest.mark.parametrize("kind,frames", [("uniform", 0), ("uniform", 2), ("frame_stack", 2), ("frame_stack", 4)])
@pytest.mark.parametrize("capacity", [40, 1000])  # 40: the ring wraps around many times
def test_links_match_the_reference_across_ends_streams_and_wrap_around(kind, frames, capacity):
    rng = np.random.default_rng(1)
    history, rb = History(frames), make_buffer(kind, capacity, frames)
    for env_ids, *rows in history.stream_steps(rng, streams=3, calls=150):
        obs, actions, rewards, next_obs, term, trunc = rows
        rb.add(obs, actions, rewards, next_obs, term, trunc, env_ids)
    assert len(history.rows) > capacity or capacity == 1000
    for n in (1, 2, 3, 5):
        check_every_row(rb, history, n)


def test_sample_uses_the_links_and_keeps_one_step_sampling_unchanged():
    rng = np.random.default_rng(2)
    history, rb = History(), make_buffer("uniform", 500, 0)
    for env_ids, *rows in history.stream_steps(rng, streams=2, calls=100):
        rb.add(*rows, env_ids)
    state = copy.deepcopy(rb.rng.bit_generator.state)
    one = rb.sample(64)
    rb.rng.bit_generator.state = state
    three = rb.sample(64, n_step=3, gamma=GAMMA)
    np.testing.assert_array_equal(one.obs, three.obs)  # the same rows, drawn by the same RNG calls
    assert one.discounts is None and three.discounts.dtype == np.float32
    for i in range(64):
        logical = int(np.flatnonzero([np.array_equal(r["obs"], three.obs[i]) for r in history.rows])[0])
        r_ref, d_ref, next_ref, term_ref = history.reference(logical, 3)
        assert three.rewards[i] == pytest.approx(r_ref, rel=1e-6)
        assert three.discounts[i] == pytest.approx(d_ref, rel=1e-6)
        np.testing.assert_array_equal(three.next_obs[i], next_ref)
        assert three.terminated[i] == term_ref


@pytest.mark.parametrize("frames", [2, 4])
def test_both_replays_sample_the_same_n_step_batches(frames):
    rng = np.random.default_rng(3)
    history = History(frames)
    a, b = make_buffer("uniform", 2000, frames), make_buffer("frame_stack", 2000, frames)
    for env_ids, *rows in history.stream_steps(rng, streams=3, calls=80):
        a.add(*rows, env_ids)
        b.add(*rows, env_ids)
    x, y = a.sample(128, n_step=4, gamma=GAMMA), b.sample(128, n_step=4, gamma=GAMMA)
    for name in ("obs", "actions", "rewards", "next_obs", "terminated", "discounts"):
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


def test_a_manual_reset_or_another_stream_never_links():
    rb = ReplayBuffer(10, (1,), np.float32, 1, seed=0)
    o = lambda v: np.array([[v]], np.float32)  # noqa: E731
    z, f = np.zeros(1), np.zeros(1, bool)
    rb.add(o(0), np.zeros((1, 1)), np.ones(1), o(1), f, f, np.array([0]))
    rb.add(o(5), np.zeros((1, 1)), np.ones(1), o(6), f, f, np.array([0]))  # obs 5 != next_obs 1: a reset
    rb.add(o(1), np.zeros((1, 1)), np.ones(1), o(2), f, f, np.array([1]))  # continues 0's pixels, other stream
    rb.add(o(6), np.zeros((1, 1)), z + 2, o(7), f, f, np.array([0]))  # continues row 1
    assert rb.succ[:4].tolist() == [-1, 3, -1, -1]


@pytest.mark.parametrize("kind,frames", [("uniform", 0), ("frame_stack", 2)])
def test_links_survive_a_state_dict_round_trip(kind, frames):
    rng = np.random.default_rng(4)
    history, rb = History(frames), make_buffer(kind, 60, frames)
    for env_ids, *rows in history.stream_steps(rng, streams=2, calls=60):
        rb.add(*rows, env_ids)
    loaded = make_buffer(kind, 60, frames)
    loaded.load_state_dict({k: np.array(v, copy=True) for k, v in rb.state_dict().items()})
    loaded.rng.bit_generator.state = rb.rng.bit_generator.state
    x, y = rb.sample(50, n_step=3, gamma=GAMMA), loaded.sample(50, n_step=3, gamma=GAMMA)
    for name in x._fields:
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)
    # and the links keep growing the same way after the load
    for env_ids, *rows in history.stream_steps(rng, streams=2, calls=10):
        rb.add(*rows, env_ids)
        loaded.add(*rows, env_ids)
    np.testing.assert_array_equal(rb.succ, loaded.succ)


@pytest.mark.parametrize("kind,frames", [("uniform", 0), ("frame_stack", 2)])
def test_a_state_saved_before_n_step_loads_without_links(kind, frames):
    rng = np.random.default_rng(5)
    history, rb = History(frames), make_buffer(kind, 100, frames)
    for env_ids, *rows in history.stream_steps(rng, streams=1, calls=30):
        rb.add(*rows, env_ids)
    new_names = ("succ", "added", "stream_ids", "stream_rows") if kind == "uniform" else ("succ", "stream_rows")
    old = {k: v for k, v in rb.state_dict().items() if k not in new_names}
    loaded = make_buffer(kind, 100, frames)
    loaded.load_state_dict(old)
    assert (loaded.succ == -1).all() and len(loaded) == len(rb)
    batch = loaded.sample(20, n_step=3, gamma=GAMMA)  # one-step returns
    np.testing.assert_allclose(batch.discounts, GAMMA)


@pytest.mark.parametrize("kind,frames", [("uniform", 0), ("frame_stack", 2)])
def test_bad_links_in_a_state_are_refused_and_change_nothing(kind, frames):
    rng = np.random.default_rng(6)
    history, rb = History(frames), make_buffer(kind, 100, frames)
    for env_ids, *rows in history.stream_steps(rng, streams=1, calls=30):
        rb.add(*rows, env_ids)
    state = {k: np.array(v, copy=True) for k, v in rb.state_dict().items()}
    state["succ"][0] = 0  # a row pointing at itself
    fresh = make_buffer(kind, 100, frames)
    with pytest.raises(ValueError, match="succ"):
        fresh.load_state_dict(state)
    assert len(fresh) == 0 and (fresh.succ == -1).all()


# ---------------------------------------------------------------------- through the agent
def test_vector_env_next_step_autoreset_rows_never_link_across_episodes():
    envs = gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
    agent = SQNAgent(envs.single_observation_space, envs.single_action_space,
                     SQNConfig(learning_starts=10_000, n_step=3), device="cpu", seed=0)
    obs, _ = envs.reset(seed=0)
    ends = 0
    for _ in range(300):
        actions = agent.act(obs)
        next_obs, rewards, term, trunc, info = envs.step(actions)
        agent.observe(obs, actions, rewards, next_obs, term, trunc, info=info)
        ends += int((term | trunc).sum())
        obs = next_obs
    rb = agent.replay
    assert ends > 5
    rows = np.arange(len(rb))
    linked = rows[rb.succ[rows] >= 0]
    # a link always continues the same episode: the successor's obs is the row's next_obs, the row is not done
    np.testing.assert_array_equal(rb.next_obs[linked], rb.obs[rb.succ[linked]])
    assert (rb.terminated[linked] == 0).all() and (rb.truncated[linked] == 0).all()
    # and every row that did not end its episode is linked, except each sub-env's newest
    open_rows = rows[(rb.terminated[rows] == 0) & (rb.truncated[rows] == 0)]
    assert len(open_rows) - len(linked) == 3


def _np_log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _one_recorded_update(action_space, cfg, truncations: bool):
    """An agent fed 32 random transitions (episodes of 9 steps; every other end a truncation when
    ``truncations``), then one gradient step: (agent, online and target nets before it, alpha before it,
    the sampled batch, the step's metrics)."""
    agent = SQNAgent(gym.spaces.Box(-1, 1, (3,), np.float32), action_space, cfg, device="cpu", seed=0)
    rng = np.random.default_rng(0)
    o = rng.uniform(-1, 1, 3).astype(np.float32)
    for t in range(32):  # exactly learning_starts: one gradient step is due
        n = rng.uniform(-1, 1, 3).astype(np.float32)
        end = t % 9 == 8
        terminated, truncated = (end and t % 2 == 0, end and t % 2 == 1) if truncations else (end, False)
        agent.observe(o, action_space.sample(), float(rng.normal()), n, terminated, truncated)
        o = rng.uniform(-1, 1, 3).astype(np.float32) if end else n
    online, target = copy.deepcopy(agent.q_nets), copy.deepcopy(agent.target_nets)
    alpha = agent.alpha.item()
    sampled = []
    sample = agent.replay.sample
    agent.replay.sample = lambda *a, **k: sampled.append(sample(*a, **k)) or sampled[-1]
    metrics = agent.learn()
    return agent, online, target, alpha, sampled[0], metrics


@pytest.mark.parametrize("munchausen", [0.0, 0.9])
@pytest.mark.parametrize("space", ["discrete", "multidiscrete"])
def test_learn_uses_the_n_step_and_munchausen_target(munchausen, space):
    """The q_loss of one gradient step equals the loss recomputed in numpy from the sampled batch."""
    action_space = gym.spaces.Discrete(3) if space == "discrete" else gym.spaces.MultiDiscrete([3, 2])
    cfg = SQNConfig(learning_starts=32, batch_size=32, n_step=3, gamma=GAMMA, munchausen_scale=munchausen,
                    munchausen_clip=-0.5, hidden_sizes=(16,), initial_alpha=0.7)
    agent, online, target, alpha, b, metrics = _one_recorded_update(action_space, cfg, truncations=True)
    assert b.discounts is not None and (b.discounts < GAMMA).any()  # some 2- and 3-step returns

    def q(nets, x):
        with torch.no_grad():
            return np.minimum(nets[0](torch.as_tensor(x)).numpy(), nets[1](torch.as_tensor(x)).numpy()).astype(np.float64)

    def qi(net, x):
        with torch.no_grad():
            return net(torch.as_tensor(x)).numpy().astype(np.float64)

    mask = agent.codec.mask
    def log_pi(qt):
        logits = qt / alpha
        if mask is not None:
            logits = np.where(mask, logits, -np.inf)
        return _np_log_softmax(logits)

    qn = q(target, b.next_obs)
    lp = log_pi(qn)
    pi = np.exp(lp)
    finite_lp = np.where(pi > 0, lp, 0.0)  # padded actions: pi = 0, log pi = -inf; they add nothing
    v = (pi * ((np.where(mask, qn, 0) if mask is not None else qn) - alpha * finite_lp)).sum(-1)
    y = b.rewards[:, None] + (b.discounts * (1 - b.terminated))[:, None] * v
    if munchausen:
        lp_now = log_pi(q(target, b.obs))
        taken = np.take_along_axis(alpha * lp_now, b.actions[:, :, None], -1)[..., 0]
        y = y + munchausen * np.clip(taken, -0.5, 0.0)
    loss = sum(((np.take_along_axis(qi(net, b.obs), b.actions[:, :, None], -1)[..., 0] - y) ** 2).mean()
               for net in online)
    assert metrics["q_loss"] == pytest.approx(loss, rel=1e-4)


# ---------------------------------------------------------------------- soft n-step: entropy on the way
def test_both_replays_sample_the_same_intermediate_states():
    rng = np.random.default_rng(8)
    history = History(2)
    a, b = make_buffer("uniform", 2000, 2), make_buffer("frame_stack", 2000, 2)
    for env_ids, *rows in history.stream_steps(rng, streams=3, calls=80):
        a.add(*rows, env_ids)
        b.add(*rows, env_ids)
    x, y = (rb.sample(128, n_step=4, gamma=GAMMA, intermediate=True) for rb in (a, b))
    for name in x._fields:
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


def test_intermediate_states_and_discounts_match_the_reference():
    rng = np.random.default_rng(7)
    history, rb = History(0), make_buffer("uniform", 300, 0)  # vector obs name their (stream, episode, step)
    for env_ids, *rows in history.stream_steps(rng, streams=2, calls=80):
        rb.add(*rows, env_ids)
    state = copy.deepcopy(rb.rng.bit_generator.state)
    plain = rb.sample(64, n_step=4, gamma=GAMMA)
    rb.rng.bit_generator.state = state
    soft = rb.sample(64, n_step=4, gamma=GAMMA, intermediate=True)
    for name in plain._fields[:6]:
        np.testing.assert_array_equal(getattr(plain, name), getattr(soft, name), err_msg=name)
    assert soft.mid_obs.shape == (64, 3, *rb.obs_shape) and soft.mid_discounts.shape == (64, 3)
    for i in range(64):
        lg = int(np.flatnonzero([np.array_equal(r["obs"], soft.obs[i]) for r in history.rows])[0])
        row, k, rows = history.rows[lg], 0, []
        while k < 3:  # the reference: walk the episode's later steps in the history
            if row["terminated"] or row["truncated"]:
                break
            later = [j for j in range(lg + 1, len(history.rows)) if history.rows[j]["stream"] == row["stream"]
                     and history.rows[j]["episode"] == row["episode"]]
            if not later:
                break
            lg, row = later[0], history.rows[later[0]]
            rows.append(row)
            k += 1
        for j, r in enumerate(rows):  # s_{t+j+1} is reached: its obs and gamma^(j+1)
            np.testing.assert_array_equal(soft.mid_obs[i, j], r["obs"])
            assert soft.mid_discounts[i, j] == pytest.approx(GAMMA ** (j + 1))
        assert (soft.mid_discounts[i, len(rows):] == 0).all()


def test_intermediate_entropy_bonus_by_hand():
    # two intermediate states: uniform over 2 actions (H = log 2), and a certain action (H = 0)
    q = torch.tensor([[[[0.0, 0.0]], [[100.0, -100.0]]]])  # (B=1, K=2, D=1, N=2)
    bonus = soft_q.intermediate_entropy_bonus(q, 0.5, torch.tensor([[0.9, 0.81]]))
    assert bonus.shape == (1, 1) and bonus.item() == pytest.approx(0.9 * 0.5 * np.log(2), rel=1e-6)
    none = soft_q.intermediate_entropy_bonus(q, 0.5, torch.zeros(1, 2))
    assert none.item() == 0.0


def test_learn_adds_the_intermediate_entropy_to_the_target():
    action_space = gym.spaces.Discrete(3)
    cfg = SQNConfig(learning_starts=32, batch_size=32, n_step=3, gamma=GAMMA, soft_n_step=True, hidden_sizes=(16,),
                    munchausen_scale=0.0,  # the reference below has no Munchausen term (tested above)
                    initial_alpha=0.7)
    agent, online, target, alpha, b, metrics = _one_recorded_update(action_space, cfg, truncations=False)

    def q(nets, x):
        with torch.no_grad():
            x = torch.as_tensor(x)
            return np.minimum(nets[0](x).numpy(), nets[1](x).numpy()).astype(np.float64)[:, 0]

    def entropy_and_value(qt):
        lp = _np_log_softmax(qt / alpha)
        h = -(np.exp(lp) * lp).sum(-1)
        return h, (np.exp(lp) * qt).sum(-1) + alpha * h

    _, v = entropy_and_value(q(target, b.next_obs))
    h_mid, _ = entropy_and_value(q(target, b.mid_obs.reshape(-1, 3)))
    y = b.rewards + b.discounts * (1 - b.terminated) * v + alpha * (b.mid_discounts * h_mid.reshape(32, 2)).sum(1)
    assert (b.mid_discounts > 0).any()
    loss = sum(((np.take_along_axis(net(torch.as_tensor(b.obs)).detach().numpy()[:, 0], b.actions, -1)[:, 0] - y) ** 2)
               .mean() for net in online)
    assert metrics["q_loss"] == pytest.approx(loss, rel=1e-4)
