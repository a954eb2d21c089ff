"""FrameStackReplayBuffer for Dict observations: the one frame-stack part deduplicated, the other parts per row.

The reference is ``ReplayBuffer`` with named parts, fed the very same transitions: the frame buffer must
return the same batches (one-step and n-step with the intermediate states, same seed) across
terminations, truncations, several streams and the ring's wrap-around, while holding far fewer bytes.
The simulated streams change the other parts without breaking the frames, so a link decided by
pixels alone would show up as a different n-step return (the reverse case, frames that jump while
the other parts continue, is in ``test_links_need_every_part_to_continue``: each jump costs ``K``
frames, and the comparison needs a frame ring that never evicts a transition before ``ReplayBuffer``
overwrites it, which its spare of ``4 K`` frames allows for long episodes only).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_state import assert_same_state, assert_save_load_continues_exactly, snapshot

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.frame_replay import FrameStackReplayBuffer
from sqn_agents.observations import MASK_KEY
from sqn_agents.replay import ReplayBuffer

torch.set_num_threads(1)

K, FRAME, N_ACTIONS = 4, (6, 6), 3
SHAPES = {"frames": (K, *FRAME), "score": (2,), "room": (), MASK_KEY: (1, N_ACTIONS)}
DTYPES = {"frames": np.uint8, "score": np.float32, "room": np.int64, MASK_KEY: bool}


class DictStream:
    """One simulated env of Dict observations: Atari-like frame stacks (reset stacks repeat their first
    frame), a float score, a Discrete room and a legal-action mask. ``step()`` returns a transition."""

    def __init__(self, rng: np.random.Generator, min_len: int, max_len: int) -> None:
        self.rng, self.min_len, self.max_len = rng, min_len, max_len
        self._reset()

    def _frame(self) -> np.ndarray:
        return self.rng.integers(0, 256, FRAME, dtype=np.uint8)

    def _others(self) -> dict[str, np.ndarray]:
        mask = self.rng.random((1, N_ACTIONS)) < 0.6
        mask[0, self.rng.integers(N_ACTIONS)] = True
        return {"score": self.rng.normal(size=2).astype(np.float32), "room": np.int64(self.rng.integers(5)),
                MASK_KEY: mask}

    def _reset(self) -> None:
        self.obs = {"frames": np.stack([self._frame()] * K), **self._others()}
        self.t, self.length = 0, int(self.rng.integers(self.min_len, self.max_len + 1))

    def step(self) -> tuple:
        obs = self.obs
        next_obs = {"frames": np.concatenate([obs["frames"][1:], self._frame()[None]]), **self._others()}
        self.t += 1
        done = self.t >= self.length
        terminated = done and bool(self.rng.random() < 0.5)
        truncated = done and not terminated
        if done:
            self._reset()
        else:
            self.obs = {k: np.copy(v) for k, v in next_obs.items()}
            if self.rng.random() < 0.05:  # the frames continue, another part does not: no link
                self.obs["score"] = self.obs["score"] + np.float32(1)
        return obs, next_obs, float(self.rng.normal()), terminated, truncated


def feed(buffers: list, streams: list[DictStream], adds: int, first_id: int = 0, every=None) -> int:
    """``adds`` vector-env steps (one row per stream) into every buffer; ``every(step)`` after each. The
    action of a transition is its own id (``N_ACTIONS`` wide would be too few), unique across the run."""
    next_id = first_id
    for step in range(adds):
        rows = [s.step() for s in streams]
        obs = {k: np.stack([r[0][k] for r in rows]) for k in SHAPES}
        next_obs = {k: np.stack([r[1][k] for r in rows]) for k in SHAPES}
        rewards, term, trunc = (np.array([r[i] for r in rows]) for i in (2, 3, 4))
        ids = np.arange(next_id, next_id + len(rows))[:, None]
        next_id += len(rows)
        for rb in buffers:
            rb.add(obs, ids, rewards, next_obs, term, trunc, np.arange(len(rows)))
        if every is not None:
            every(step)
    return next_id


class _EveryRow:
    """Stands in for ``rb.rng`` so that ``sample(len(rb))`` returns every stored transition once."""

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        assert low == 0 and size == high
        return np.arange(high)


def every_row(rb, **kwargs) -> dict:
    """Every stored transition, sorted by id, as a dict of arrays (obs parts flattened into it)."""
    rng, rb.rng = rb.rng, _EveryRow()
    try:
        batch = rb.sample(len(rb), **kwargs)
    finally:
        rb.rng = rng
    order = np.argsort(batch.actions[:, 0])
    return flatten(batch, order)


def flatten(batch, order=slice(None)) -> dict:
    out = {}
    for field, value in batch._asdict().items():
        if isinstance(value, dict):
            out.update({f"{field}.{k}": v[order] for k, v in value.items()})
        elif value is not None:
            out[field] = value[order]
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def make_pair(capacity: int, seed: int = 0) -> tuple[ReplayBuffer, FrameStackReplayBuffer]:
    return (ReplayBuffer(capacity, SHAPES, DTYPES, 1, seed=seed),
            FrameStackReplayBuffer(capacity, SHAPES, DTYPES, 1, seed=seed, frame_part="frames"))


# ----------------------------------------------------------------------------- the buffer against ReplayBuffer
@pytest.mark.parametrize("seed", [0, 1])
def test_the_dict_frame_buffer_returns_the_batches_of_replay_buffer(seed):
    capacity, n_envs = 96, 3  # episodes of 30 to 70 steps: the frame ring's spare covers their starts
    plain, frames = make_pair(capacity, seed)
    streams = [DictStream(np.random.default_rng([seed, i]), 30, 70) for i in range(n_envs)]
    checked = {"all": 0, "random": 0, "terminated": 0, "truncated": 0, "unlinked": 0}

    def compare(step: int) -> None:
        assert len(frames) == len(plain)  # the frame ring never evicts early here
        new = np.arange(plain.added - n_envs, plain.added) % capacity
        checked["terminated"] += int(plain.terminated[new].sum())
        checked["truncated"] += int(plain.truncated[new].sum())
        if step % 10 == 0:  # every stored transition, with its 3-step return and the states on the way
            for kwargs in ({}, {"n_step": 3, "gamma": 0.9, "intermediate": True}):
                assert_same(every_row(plain, **kwargs), every_row(frames, **kwargs))
            checked["all"] += 1
        if plain.added <= capacity or plain.added % capacity == 0:  # both rings then map a draw to the same row
            for kwargs in ({}, {"n_step": 3, "gamma": 0.9}, {"n_step": 3, "gamma": 0.9, "intermediate": True}):
                assert_same(flatten(plain.sample(32, **kwargs)), flatten(frames.sample(32, **kwargs)))
            checked["random"] += 1

    feed([plain, frames], streams, 200, every=compare)  # 600 transitions: the ring wraps five times
    assert checked["all"] == 20 and checked["random"] == 32 + 5  # until the ring is full, then at 192, 288, ..., 576
    assert plain.added == frames.added == 600
    # the streams did what the test relies on: ends of both kinds, and links broken mid-episode by the score
    assert checked["terminated"] >= 3 and checked["truncated"] >= 3
    open_rows = (plain.succ < 0) & (plain.terminated == 0) & (plain.truncated == 0)
    assert open_rows.sum() > n_envs  # more rows without a successor than the streams' newest ones
    assert frames.frames_written < 1.1 * frames.added  # about one frame per transition


@pytest.mark.parametrize("one_call", [False, True])
def test_links_need_every_part_to_continue(one_call):
    """One stream, four steps: step 1 continues step 0; step 2's score jumps (its frames continue);
    step 3's frames jump (its score continues). Added one at a time or all in one call."""
    plain, frames = make_pair(10)
    f = np.random.default_rng(0).integers(0, 256, (20, *FRAME), dtype=np.uint8)
    other = {"room": np.int64(1), MASK_KEY: np.ones((1, N_ACTIONS), bool)}

    def obs(t: int, score: float) -> dict:
        return {"frames": f[t : t + K], "score": np.full(2, score, np.float32), **other}

    steps = [(obs(0, 0), obs(1, 1)), (obs(1, 1), obs(2, 2)), (obs(2, 5), obs(3, 3)), (obs(10, 3), obs(11, 4))]
    rows = [{k: np.stack([np.asarray(step[j][k]) for step in steps]) for k in SHAPES} for j in (0, 1)]
    calls = [slice(0, 4)] if one_call else [slice(i, i + 1) for i in range(4)]
    for rb in (plain, frames):
        for c in calls:
            rb.add({k: v[c] for k, v in rows[0].items()}, np.arange(4)[c, None], np.ones(4)[c],
                   {k: v[c] for k, v in rows[1].items()}, np.zeros(4, bool)[c], np.zeros(4, bool)[c])
    assert plain.succ[:4].tolist() == frames.succ[:4].tolist() == [1, -1, -1, -1]
    # frames are shared by pixels alone: steps 1 and 2 store one new frame each, step 3 a whole stack and one
    assert frames.frames_written == (K + 1) + 1 + 1 + (K + 1)


def test_every_part_keeps_its_dtype_and_mid_obs_its_shape():
    _, frames = make_pair(200)
    feed([frames], [DictStream(np.random.default_rng(3), 5, 9) for _ in range(2)], 40)
    batch = frames.sample(8, n_step=3, gamma=0.9, intermediate=True)
    for obs in (batch.obs, batch.next_obs):
        assert list(obs) == list(SHAPES)  # the parts in the space's order
        for k, shape in SHAPES.items():
            assert obs[k].shape == (8, *shape) and obs[k].dtype == np.dtype(DTYPES[k]), k
    for k, shape in SHAPES.items():
        assert batch.mid_obs[k].shape == (8, 2, *shape) and batch.mid_obs[k].dtype == np.dtype(DTYPES[k]), k


def test_nbytes_is_far_below_the_plain_buffers_for_atari_sized_stacks():
    shapes, dtypes = {**SHAPES, "frames": (4, 84, 84)}, DTYPES
    n = 20_000
    plain = ReplayBuffer(n, shapes, dtypes, 1)
    frames = FrameStackReplayBuffer(n, shapes, dtypes, 1, frame_part="frames")
    per_row_plain, per_row_frames = plain.nbytes / n, frames.nbytes / n
    assert per_row_plain > 2 * 4 * 84 * 84  # obs and next_obs stacks whole
    assert per_row_frames < 1.1 * 84 * 84 + 200  # about one frame, plus ids, scalars and the small parts
    assert frames.nbytes < plain.nbytes / 7
    # the small parts are counted: stored twice (obs and next_obs) per row
    small = sum(int(np.prod(s, dtype=np.int64)) * np.dtype(dtypes[k]).itemsize for k, s in shapes.items() if k != "frames")
    bare = FrameStackReplayBuffer(n, (4, 84, 84), np.uint8, 1)
    assert frames.nbytes - bare.nbytes == 2 * n * small


def test_state_dict_round_trip_and_bad_states():
    _, rb = make_pair(60)
    streams = [DictStream(np.random.default_rng(5), 10, 20) for _ in range(2)]
    next_id = feed([rb], streams, 50)  # wrapped
    state = rb.state_dict()
    assert {"obs.score", "next_obs.room", f"obs.{MASK_KEY}"} <= set(state) and "obs.frames" not in state
    loaded = FrameStackReplayBuffer(60, SHAPES, DTYPES, 1, frame_part="frames")
    loaded.load_state_dict(state)
    loaded.rng.bit_generator.state = rb.rng.bit_generator.state  # the sampler's state is saved apart
    assert_same(every_row(rb, n_step=3, gamma=0.9, intermediate=True),
                every_row(loaded, n_step=3, gamma=0.9, intermediate=True))
    # both continue the same streams identically: links, frames and samples
    feed([rb, loaded], streams, 20, next_id)
    assert rb.frames_written == loaded.frames_written
    assert_same(every_row(rb, n_step=3, gamma=0.9), every_row(loaded, n_step=3, gamma=0.9))
    assert_same(flatten(rb.sample(32, n_step=3, gamma=0.9)), flatten(loaded.sample(32, n_step=3, gamma=0.9)))

    for corrupt in ("missing", "dtype", "shape"):
        bad = dict(state)
        if corrupt == "missing":
            del bad["next_obs.score"]
        elif corrupt == "dtype":
            bad["obs.room"] = bad["obs.room"].astype(np.int32)
        else:
            bad[f"obs.{MASK_KEY}"] = bad[f"obs.{MASK_KEY}"][:-1]
        fresh = FrameStackReplayBuffer(60, SHAPES, DTYPES, 1, frame_part="frames")
        with pytest.raises(ValueError, match="score|room|action_mask"):
            fresh.load_state_dict(bad)
        assert len(fresh) == 0 and fresh.frames_written == 0 and not fresh.extra_obs["score"].any()


def test_bad_construction_and_bad_adds_are_refused():
    with pytest.raises(ValueError, match="frame_part"):
        FrameStackReplayBuffer(10, SHAPES, DTYPES)
    with pytest.raises(ValueError, match="frame_part"):
        FrameStackReplayBuffer(10, SHAPES, DTYPES, frame_part="pixels")
    with pytest.raises(ValueError, match="frame_part"):
        FrameStackReplayBuffer(10, (K, *FRAME), np.uint8, frame_part="frames")
    _, rb = make_pair(10)
    obs = {k: np.zeros((1, *s), DTYPES[k]) for k, s in SHAPES.items()}
    with pytest.raises(ValueError, match="parts"):
        rb.add({"frames": obs["frames"]}, np.zeros((1, 1)), np.zeros(1), obs, np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="score"):
        rb.add({**obs, "score": np.zeros((1, 3), np.float32)}, np.zeros((1, 1)), np.zeros(1), obs, np.zeros(1), np.zeros(1))
    assert len(rb) == 0


# ----------------------------------------------------------------------------- through the agent
def dict_space(frames: int = 1) -> gym.spaces.Dict:
    parts = {f"frames{i}" if i else "frames": gym.spaces.Box(0, 255, (K, 12, 12), np.uint8) for i in range(frames)}
    return gym.spaces.Dict({**parts, "score": gym.spaces.Box(-1, 1, (2,), np.float32),
                            MASK_KEY: gym.spaces.MultiBinary(N_ACTIONS)})


def test_the_agent_picks_the_dict_frame_buffer_under_auto_and_frame_stack():
    space, actions = dict_space(), gym.spaces.Discrete(N_ACTIONS)
    for kind in ("auto", "frame_stack"):
        replay = SQNAgent(space, actions, SQNConfig(replay=kind, buffer_size=100, batch_size=16), device="cpu").replay
        assert isinstance(replay, FrameStackReplayBuffer) and replay.frame_part == "frames"
        assert set(replay.extra_shape) == {"score", MASK_KEY}
    uniform = SQNAgent(space, actions, SQNConfig(replay="uniform", buffer_size=100, batch_size=16), device="cpu").replay
    assert type(uniform) is ReplayBuffer
    # two frame-stack parts: neither is deduplicated (auto), and frame_stack is refused
    two = dict_space(frames=2)
    assert type(SQNAgent(two, actions, SQNConfig(buffer_size=100, batch_size=16), device="cpu").replay) is ReplayBuffer
    with pytest.raises(ValueError, match="2 such parts"):
        SQNAgent(two, actions, SQNConfig(replay="frame_stack", buffer_size=100, batch_size=16), device="cpu")
    no_stack = gym.spaces.Dict({"score": gym.spaces.Box(-1, 1, (2,), np.float32)})
    assert type(SQNAgent(no_stack, actions, SQNConfig(buffer_size=100, batch_size=16), device="cpu").replay) is ReplayBuffer
    with pytest.raises(ValueError, match="0 such parts"):
        SQNAgent(no_stack, actions, SQNConfig(replay="frame_stack", buffer_size=100, batch_size=16), device="cpu")


class DictFrameEnv(gym.Env):
    """Overlapping 4-frame stacks, a score and a legal-action mask, in short episodes."""

    def __init__(self) -> None:
        self.observation_space = dict_space()
        self.action_space = gym.spaces.Discrete(N_ACTIONS)

    def _obs(self) -> dict:
        mask = self.np_random.random(N_ACTIONS) < 0.7
        mask[self.t % N_ACTIONS] = True
        score = np.array([self.t / 15, -self.t / 15], np.float32)
        return {"frames": self.stack.copy(), "score": score, MASK_KEY: mask.astype(np.int8)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.stack = np.repeat(self.np_random.integers(0, 256, (1, 12, 12), dtype=np.uint8), K, axis=0)
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.stack = np.concatenate([self.stack[1:], self.np_random.integers(0, 256, (1, 12, 12), dtype=np.uint8)])
        return self._obs(), float(action == self.t % N_ACTIONS), self.t >= 15, False, {}


def test_save_and_load_through_the_agent_continue_identically(tmp_path):
    config = SQNConfig(batch_size=16, buffer_size=200, learning_starts=40, n_step=3)

    # 260 steps: past the buffer's capacity
    loaded = assert_save_load_continues_exactly(DictFrameEnv, config, total=260, save_at=150, path=tmp_path / "dict")
    assert isinstance(loaded.replay, FrameStackReplayBuffer)


def test_a_checkpoint_saved_with_the_plain_buffer_still_loads_and_resumes(tmp_path):
    """Before the frame part of a Dict observation was deduplicated, replay='auto' stored it in a ReplayBuffer."""
    env = DictFrameEnv()
    config = SQNConfig(batch_size=16, buffer_size=200, learning_starts=40)
    agent = SQNAgent(env.observation_space, env.action_space, config, seed=2, device="cpu")
    old = agent.learner.replay = ReplayBuffer(200, agent.learner.obs_codec.storage_shape,
                                              agent.learner.obs_codec.storage_dtype, 1, seed=2)
    obs, _ = env.reset(seed=2)
    for _ in range(80):
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        agent.learn()
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
    agent.save(tmp_path / "old", include_replay=True)
    loaded = SQNAgent.load(tmp_path / "old", device="cpu")
    assert type(loaded.replay) is ReplayBuffer and len(loaded.replay) == len(old) == 80
    assert_same_state(snapshot(agent), snapshot(loaded))
    assert_same(flatten(old.sample(16)), flatten(loaded.replay.sample(16)))
