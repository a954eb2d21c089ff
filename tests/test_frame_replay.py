"""FrameStackReplayBuffer: every sampleable transition equals what was added, across the edge cases.

The envs here are simulated streams of random frames. Every frame carries a unique stamp in its
first bytes (unless a test copies a frame on purpose), and every transition's action is its own
unique id, so a sampled row is looked up in ``Reference`` and compared exactly: obs, next_obs,
action, reward and terminated. ``check_every_transition`` samples every valid row at once
(through ``sample`` itself, with an rng that returns every index), rather than a random few.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqn_agents.frame_replay import FrameStackCapacityWarning, FrameStackReplayBuffer, is_frame_stack_space
from sqn_agents.replay import ReplayBuffer

# Tiny buffers with non-overlapping streams are limited by their frame ring on purpose here.
pytestmark = pytest.mark.filterwarnings("ignore::sqn_agents.frame_replay.FrameStackCapacityWarning")

K = 4
FRAME = (5, 6)


# ----------------------------------------------------------------------------- simulated envs
@dataclass
class Record:
    obs: np.ndarray
    next_obs: np.ndarray
    reward: float
    terminated: bool
    order: int  # position in add order


@dataclass
class Reference:
    """What was added, by transition id (the action)."""

    records: dict[int, Record] = field(default_factory=dict)
    added: int = 0

    def add(self, rb: FrameStackReplayBuffer, rows: list[tuple], env_ids: np.ndarray | None) -> None:
        ids = np.arange(self.added, self.added + len(rows))
        obs, next_obs, rewards, term, trunc = (np.stack(x) for x in zip(*rows, strict=True))
        for i, (o, x, r, t, _) in zip(ids, rows, strict=True):
            self.records[int(i)] = Record(o, x, float(np.float32(r)), bool(t), int(i))
        rb.add(obs, ids[:, None], rewards, next_obs, term, trunc, env_ids)
        self.added += len(rows)


class _EveryRow:
    """Stands in for ``rb.rng`` so that ``sample(len(rb))`` returns every valid transition once."""

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        assert low == 0 and size == high
        return np.arange(high)


def check_every_transition(rb: FrameStackReplayBuffer, ref: Reference) -> np.ndarray:
    """Every valid transition matches what was added; returns their ids."""
    assert 0 <= len(rb) <= min(rb.capacity, ref.added)
    if len(rb) == 0:
        return np.zeros(0, np.int64)
    rng, rb.rng = rb.rng, _EveryRow()
    try:
        batch = rb.sample(len(rb))
    finally:
        rb.rng = rng
    ids = batch.actions[:, 0]
    assert len(np.unique(ids)) == len(ids)  # each valid transition exactly once
    records = [ref.records[int(i)] for i in ids]
    assert min(r.order for r in records) >= ref.added - rb.capacity  # nothing older than the ring holds
    np.testing.assert_array_equal(batch.obs, np.stack([r.obs for r in records]))
    np.testing.assert_array_equal(batch.next_obs, np.stack([r.next_obs for r in records]))
    np.testing.assert_array_equal(batch.rewards, np.array([r.reward for r in records], np.float32))
    np.testing.assert_array_equal(batch.terminated, np.array([r.terminated for r in records], np.float32))
    assert batch.obs.dtype == np.uint8 and batch.rewards.dtype == np.float32 and batch.terminated.dtype == np.float32
    return ids


class FrameSource:
    """Random frames stamped with a unique counter (so no two fresh frames are equal)."""

    def __init__(self, rng: np.random.Generator, frame_shape: tuple[int, ...] = FRAME) -> None:
        self.rng, self.frame_shape, self.count = rng, frame_shape, 0

    def frame(self) -> np.ndarray:
        f = self.rng.integers(0, 256, self.frame_shape, dtype=np.uint8)
        f.reshape(-1)[:4] = np.frombuffer(np.uint32(self.count).tobytes(), np.uint8)
        self.count += 1
        return f

    def stack(self) -> np.ndarray:
        return np.stack([self.frame() for _ in range(K)])


@dataclass
class StreamStyle:
    """How one simulated env behaves; the defaults are an Atari-like frame stack."""

    min_len: int = 3
    max_len: int = 12
    reset: tuple[str, ...] = ("repeat", "zeros", "distinct")  # how reset stacks are padded
    p_static: float = 0.0  # the new frame repeats the last one (a frozen screen)
    p_periodic: float = 0.0  # the new frame repeats the oldest one of the stack (a blinking screen)
    p_whole_next: float = 0.0  # next_obs is not obs shifted: K fresh frames
    p_jump: float = 0.0  # the next obs does not continue next_obs: a fresh stack
    p_near_miss: float = 0.0  # the next obs is next_obs with one pixel changed


class Stream:
    """One env: ``step()`` returns a transition ``(obs, next_obs, reward, terminated, truncated)``."""

    def __init__(self, source: FrameSource, style: StreamStyle) -> None:
        self.src, self.style, self.rng = source, style, source.rng
        self._reset()

    def _reset(self) -> None:
        kind = self.rng.choice(self.style.reset)
        first = self.src.frame()
        if kind == "repeat":  # gymnasium's FrameStackObservation default
            self.obs = np.stack([first] * K)
        elif kind == "zeros":
            self.obs = np.stack([np.zeros_like(first)] * (K - 1) + [first])
        else:  # whatever the env gave: all distinct
            self.obs = np.stack([first] + [self.src.frame() for _ in range(K - 1)])
        self.t, self.length = 0, int(self.rng.integers(self.style.min_len, self.style.max_len + 1))

    def step(self) -> tuple:
        s, obs = self.style, self.obs
        if self.rng.random() < s.p_whole_next:
            next_obs = self.src.stack()
        else:
            new = obs[-1].copy() if self.rng.random() < s.p_static else self.src.frame()
            new = obs[0].copy() if self.rng.random() < s.p_periodic else new
            next_obs = np.concatenate([obs[1:], new[None]])
        self.t += 1
        done = self.t >= self.length
        terminated = done and bool(self.rng.random() < 0.5)
        truncated = done and not terminated
        reward = float(self.rng.normal())
        if done:
            self._reset()
        elif self.rng.random() < s.p_jump:
            self.obs = self.src.stack()
        elif self.rng.random() < s.p_near_miss:
            self.obs = next_obs.copy()
            self.obs[-1, -1, -1] ^= 1
        else:
            self.obs = next_obs
        return obs, next_obs, reward, terminated, truncated


def make_streams(seed: int, n: int, style: StreamStyle, frame_shape: tuple[int, ...] = FRAME) -> list[Stream]:
    source = FrameSource(np.random.default_rng(seed), frame_shape)
    return [Stream(source, style) for _ in range(n)]


def run_vector(rb, ref, streams, steps, check=True) -> None:
    """Vector-env style: one row per stream per add."""
    for _ in range(steps):
        ref.add(rb, [s.step() for s in streams], np.arange(len(streams)))
        if check:
            check_every_transition(rb, ref)


# ----------------------------------------------------------------------------- the space test
def test_is_frame_stack_space_accepts_channels_first_uint8_stacks_only():
    assert is_frame_stack_space((4, 84, 84), np.uint8)
    assert is_frame_stack_space((4, 12, 12), np.uint8)
    assert not is_frame_stack_space((4, 84, 84), np.float32)
    assert not is_frame_stack_space((84, 84, 4), np.uint8)  # channels-last
    assert not is_frame_stack_space((10, 10, 4), np.uint8)  # MinAtar
    assert not is_frame_stack_space((1, 84, 84), np.uint8)  # nothing to share
    assert not is_frame_stack_space((84, 84), np.uint8)
    assert not is_frame_stack_space((4,), np.uint8)


# ----------------------------------------------------------------------------- edge cases
def test_sampling_an_empty_buffer_is_a_value_error():
    rb = FrameStackReplayBuffer(10, (K, *FRAME), np.uint8)
    with pytest.raises(ValueError, match="empty"):
        rb.sample(1)


@pytest.mark.parametrize(("kind", "frames"), [("repeat", 1), ("zeros", 2), ("distinct", K)])
def test_episode_starts_store_the_reset_stack_as_given(kind, frames):
    """Reset stacks are kept as the env gave them (no padding assumed); repeated frames are shared."""
    streams = make_streams(0, 1, StreamStyle(reset=(kind,), min_len=5, max_len=5))
    rb, ref = FrameStackReplayBuffer(100, (K, *FRAME), np.uint8, seed=0), Reference()
    ref.add(rb, [streams[0].step()], None)
    assert rb.frames_written == frames + 1  # the reset stack's distinct frames, then one new frame
    run_vector(rb, ref, streams, 29)
    assert len(rb) == 30 and rb.frames_written == 6 * (frames + 5)  # per episode: reset frames + 5 new ones
    first = rb.sample(200)
    starts = [i for i in first.actions[:, 0] if ref.records[int(i)].order % 5 == 0]
    assert starts  # episode starts were sampled (and compared, in check_every_transition)


def test_terminations_are_stored_and_never_linked_to_the_next_episode():
    streams = make_streams(1, 1, StreamStyle(min_len=1, max_len=6))
    rb, ref = FrameStackReplayBuffer(200, (K, *FRAME), np.uint8, seed=0), Reference()
    run_vector(rb, ref, streams, 150)
    ids = check_every_transition(rb, ref)
    assert {ref.records[int(i)].terminated for i in ids} == {True, False}


@pytest.mark.parametrize("one_call", [False, True])
def test_truncation_keeps_the_real_final_obs_and_starts_the_next_episode_fresh(one_call):
    """A truncated step's next_obs is the final observation; the next episode's reset stack is
    stored by itself even when it happens to continue that final observation pixel for pixel
    (whether the two steps come in one add or in two)."""
    src = FrameSource(np.random.default_rng(2))
    f = [src.frame() for _ in range(K + 2)]
    obs0, obs1, obs2 = np.stack(f[0:K]), np.stack(f[1 : K + 1]), np.stack(f[2 : K + 2])
    rb, ref = FrameStackReplayBuffer(50, (K, *FRAME), np.uint8, seed=0), Reference()
    truncated_step = (obs0, obs1, 1.0, False, True)  # obs1 is the real last observation
    reset_step = (obs1, obs2, 2.0, False, False)  # a reset stack equal to obs1: not linked
    if one_call:
        ref.add(rb, [truncated_step, reset_step], None)
        assert rb.frames_written == (K + 1) * 2
    else:
        ref.add(rb, [truncated_step], None)
        ref.add(rb, [reset_step], None)
        assert rb.frames_written == (K + 1) * 2
    reset = src.stack()
    ref.add(rb, [(obs2, reset, 3.0, False, True), (reset, obs0, 4.0, True, False)], None)
    check_every_transition(rb, ref)
    batch = rb.sample(64)
    assert set(batch.terminated.tolist()) == {0.0, 1.0}  # truncation bootstraps, termination does not


def test_ring_wrap_around_keeps_every_valid_transition_intact():
    """Long overlapping episodes: the transition ring, not the frame ring, decides what is valid."""
    streams = make_streams(3, 1, StreamStyle(min_len=20, max_len=40, reset=("repeat",)))
    rb, ref = FrameStackReplayBuffer(20, (K, *FRAME), np.uint8, seed=0), Reference()
    for _ in range(300):
        ref.add(rb, [streams[0].step()], None)
        check_every_transition(rb, ref)
        assert len(rb) == min(ref.added, 20)
    assert rb.frames_written > 5 * rb.num_frames  # the frame ring wrapped many times


def test_frame_ring_pressure_evicts_instead_of_corrupting():
    """Stacks that share nothing fill the frame ring before the transition ring: old transitions
    go, and the ones left are still exact."""
    style = StreamStyle(p_whole_next=0.5, p_jump=0.5, reset=("distinct",))
    streams = make_streams(4, 2, style)
    rb, ref = FrameStackReplayBuffer(30, (K, *FRAME), np.uint8, seed=0), Reference()
    run_vector(rb, ref, streams, 200)
    assert 0 < len(rb) < 30


def test_interleaved_streams_with_different_episode_boundaries():
    styles = [StreamStyle(min_len=2, max_len=4), StreamStyle(min_len=7, max_len=30), StreamStyle(min_len=1, max_len=1)]
    source = FrameSource(np.random.default_rng(5))
    streams = [Stream(source, s) for s in styles]
    rb, ref = FrameStackReplayBuffer(64, (K, *FRAME), np.uint8, seed=0), Reference()
    rng = np.random.default_rng(6)
    for _ in range(150):
        # A random number of steps per stream in one add, streams in a shuffled order; rows of
        # one stream stay in time order.
        env_ids = rng.permutation(np.repeat(np.arange(3), rng.integers(0, 3, 3)))
        if len(env_ids):
            ref.add(rb, [streams[i].step() for i in env_ids], env_ids + 100)
            check_every_transition(rb, ref)
    assert len(rb) > 0


def test_vector_env_rows_share_frames_like_a_single_stream():
    streams = make_streams(7, 4, StreamStyle(min_len=50, max_len=80, reset=("repeat",)))
    rb, ref = FrameStackReplayBuffer(500, (K, *FRAME), np.uint8, seed=0), Reference()
    run_vector(rb, ref, streams, 100, check=False)
    check_every_transition(rb, ref)
    assert len(rb) == 400 and rb.frames_written <= 400 + 4 * 3  # one frame per step, one per reset


def test_a_paused_stream_does_not_make_the_buffer_drop_what_came_meanwhile():
    """A stream that resumes after a long pause stores its stack again rather than reusing frames
    that are about to be overwritten (which would evict everything added since, early)."""
    paused, busy = make_streams(15, 2, StreamStyle(min_len=1000, max_len=1000, reset=("repeat",)))
    rb, ref = FrameStackReplayBuffer(100, (K, *FRAME), np.uint8, seed=0), Reference()
    ref.add(rb, [paused.step()], np.array([0]))
    for _ in range(70):
        ref.add(rb, [busy.step()], np.array([1]))
    ref.add(rb, [paused.step()], np.array([0]))
    for _ in range(100):
        ref.add(rb, [busy.step()], np.array([1]))
        assert len(rb) >= min(ref.added, 100) - 5
    check_every_transition(rb, ref)


def test_stream_that_does_not_overlap_falls_back_to_whole_stacks():
    """Detected by comparing pixels: a jump, a one-pixel near miss, a next_obs that is not a shift."""
    src = FrameSource(np.random.default_rng(8))
    a, b = src.stack(), src.stack()
    near = a.copy()
    near[-1, -1, -1] ^= 1
    rb, ref = FrameStackReplayBuffer(50, (K, *FRAME), np.uint8, seed=0), Reference()
    ref.add(rb, [(b, a, 0.0, False, False)], None)  # next_obs not a shift of obs: 2K frames
    assert rb.frames_written == 2 * K
    ref.add(rb, [(near, b, 0.0, False, False)], None)  # obs differs from the last next_obs by one pixel
    assert rb.frames_written == 4 * K
    ref.add(rb, [(b, src.stack(), 0.0, False, False)], env_ids=np.array([0]))  # continues: obs shared
    assert rb.frames_written == 5 * K
    check_every_transition(rb, ref)

    style = StreamStyle(p_whole_next=0.3, p_jump=0.2, p_near_miss=0.2, p_static=0.2, p_periodic=0.2)
    streams = make_streams(9, 3, style)
    run_vector(rb, ref, streams, 60)


def test_rows_of_one_stream_in_one_add_and_more_rows_than_capacity():
    """A long trajectory in one call (chunked inside add) and a call larger than the buffer."""
    streams = make_streams(10, 1, StreamStyle(min_len=100, max_len=300, p_static=0.1))
    rb, ref = FrameStackReplayBuffer(700, (K, *FRAME), np.uint8, seed=0), Reference()
    ref.add(rb, [streams[0].step() for _ in range(600)], None)
    check_every_transition(rb, ref)
    assert len(rb) == 600 and rb.frames_written < 620
    ref.add(rb, [streams[0].step() for _ in range(1500)], None)
    check_every_transition(rb, ref)
    assert len(rb) == 700


def test_stack_axis_other_than_the_first():
    streams = make_streams(11, 2, StreamStyle(p_static=0.2, p_near_miss=0.1))
    rb = FrameStackReplayBuffer(40, (*FRAME, K), np.uint8, seed=0, stack_axis=-1)
    ref = Reference()

    class Last:  # the same streams, channels-last
        def __init__(self, s: Stream) -> None:
            self.s = s

        def step(self) -> tuple:
            o, x, r, t, u = self.s.step()
            return np.moveaxis(o, 0, -1), np.moveaxis(x, 0, -1), r, t, u

    run_vector(rb, ref, [Last(s) for s in streams], 80)
    assert rb.frames_written < 2 * ref.added


def test_observations_that_are_not_stacks_warn_about_the_lost_capacity():
    streams = make_streams(12, 1, StreamStyle(p_whole_next=1.0, p_jump=1.0))
    rb, ref = FrameStackReplayBuffer(40, (K, *FRAME), np.uint8, seed=0), Reference()
    with pytest.warns(FrameStackCapacityWarning, match="replay='uniform'"):
        run_vector(rb, ref, streams, 100, check=False)
    check_every_transition(rb, ref)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    capacity=st.integers(1, 80),
    n_streams=st.integers(1, 4),
    max_len=st.integers(1, 40),
    style=st.sampled_from(["atari", "static", "messy"]),
    rows_per_add=st.integers(1, 6),
)
def test_property_every_transition_is_exact(seed, capacity, n_streams, max_len, style, rows_per_add):
    """Random capacities, stream counts, episode lengths and mixes of overlap and non-overlap."""
    probs = {"atari": {}, "static": {"p_static": 0.3}, "messy": {
        "p_whole_next": 0.2, "p_jump": 0.1, "p_near_miss": 0.1, "p_static": 0.2, "p_periodic": 0.2}}[style]
    streams = make_streams(seed, n_streams, StreamStyle(min_len=1, max_len=max_len, **probs))
    rb, ref = FrameStackReplayBuffer(capacity, (K, *FRAME), np.uint8, seed=seed), Reference()
    rng = np.random.default_rng(seed)
    for _ in range(120 // rows_per_add):
        env_ids = rng.integers(0, n_streams, rows_per_add)
        ref.add(rb, [streams[i].step() for i in env_ids], None if n_streams == 1 else env_ids)
        check_every_transition(rb, ref)
    # load_state_dict checks the layout invariants (ids of live frames, ordered eviction keys).
    copy = FrameStackReplayBuffer(capacity, (K, *FRAME), np.uint8)
    copy.load_state_dict(rb.state_dict())
    copy.rng = rb.rng
    check_every_transition(copy, ref)


# ----------------------------------------------------------------------------- checkpoints
def filled_buffer(seed: int = 13) -> tuple[FrameStackReplayBuffer, Reference, list[Stream]]:
    streams = make_streams(seed, 3, StreamStyle(p_static=0.1, p_whole_next=0.05, p_jump=0.05))
    rb, ref = FrameStackReplayBuffer(60, (K, *FRAME), np.uint8, seed=seed), Reference()
    run_vector(rb, ref, streams, 70, check=False)  # past both rings' wrap-around
    return rb, ref, streams


def test_state_dict_round_trip_gives_identical_samples_and_continues_identically():
    rb, ref, streams = filled_buffer()
    state = {k: v.copy() for k, v in rb.state_dict().items()}
    assert all(type(v) is np.ndarray for v in state.values())
    loaded = FrameStackReplayBuffer(60, (K, *FRAME), np.uint8, seed=999)
    loaded.load_state_dict(state)
    loaded.rng.bit_generator.state = rb.rng.bit_generator.state
    assert len(loaded) == len(rb)
    for _ in range(3):
        a, b = rb.sample(50), loaded.sample(50)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    # Both continue the same way: the per-stream memory came back too.
    for _ in range(30):
        rows = [s.step() for s in streams]
        for buffer in (rb, loaded):
            obs, next_obs, rewards, term, trunc = (np.stack(x) for x in zip(*rows, strict=True))
            buffer.add(obs, np.zeros((3, 1)), rewards, next_obs, term, trunc, np.arange(3))
    for name, value in rb.state_dict().items():
        np.testing.assert_array_equal(value, loaded.state_dict()[name], err_msg=name)
    check_round_trip_of_empty_buffer()


def check_round_trip_of_empty_buffer() -> None:
    empty = FrameStackReplayBuffer(5, (K, *FRAME), np.uint8)
    other = FrameStackReplayBuffer(5, (K, *FRAME), np.uint8)
    other.load_state_dict(empty.state_dict())
    assert len(other) == 0


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: s.update(obs_frames=s["obs_frames"] + 10_000),  # a frame that was never saved
        lambda s: s.update(next_frames=s["next_frames"] - 10_000),
        lambda s: s.update(frames=s["frames"][1:]),
        lambda s: s.update(keys=s["keys"][::-1].copy()),
        lambda s: s.update(keys=s["keys"] + 1_000),  # keys above the frames they guard
        lambda s: s.update(actions=s["actions"][:-1]),
        lambda s: s.update(added=np.array(3, np.int64)),
        lambda s: s.update(frames_written=np.array(-1, np.int64)),
        lambda s: s.update(stream_ids=s["stream_ids"][::-1].copy()),
        lambda s: s.update(rewards=np.full_like(s["rewards"], np.nan)),
        lambda s: s.update(terminated=np.full_like(s["terminated"], 0.5)),
        lambda s: s.update(frames=s["frames"].astype(np.float32)),
        lambda s: s.pop("keys"),
    ],
)
def test_load_state_dict_refuses_inconsistent_layouts_and_changes_nothing(corrupt):
    rb, _, _ = filled_buffer()
    state = {k: v.copy() for k, v in rb.state_dict().items()}
    corrupt(state)
    target, _, _ = filled_buffer(seed=14)
    before = {k: v.copy() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError):
        target.load_state_dict(state)
    for name, value in target.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


# ----------------------------------------------------------------------------- memory
def atari_like_episodes(rng: np.random.Generator, n: int, frame_shape=(84, 84)):
    """Yield (obs, next_obs, terminated) views for ``n`` steps of episodes of 100-1000 steps with
    distinct reset frames (the costliest start), each frame unique (no accidental sharing)."""
    pool = rng.integers(0, 256, (512, *frame_shape), dtype=np.uint8)
    stamp = 0
    while n > 0:
        length = min(n, int(rng.integers(100, 1001)))
        frames = pool[rng.integers(0, len(pool), length + K)]
        frames.reshape(len(frames), -1)[:, :8] = np.arange(stamp, stamp + len(frames), dtype=np.int64).view(np.uint8).reshape(-1, 8)
        stamp += len(frames)
        s = frames.strides
        stacks = np.lib.stride_tricks.as_strided(frames, (length + 1, K, *frame_shape), (s[0], *s), writeable=False)
        term = np.zeros(length, bool)
        term[-1] = True
        yield stacks[:-1], stacks[1:], term
        n -= length


@pytest.mark.slow
def test_bytes_per_transition_at_100k_atari_stacks():
    n = 100_000
    rb = FrameStackReplayBuffer(n, (K, 84, 84), np.uint8, seed=0)
    for obs, next_obs, term in atari_like_episodes(np.random.default_rng(0), n):
        m = len(term)
        rb.add(obs, np.zeros((m, 1)), np.zeros(m), next_obs, term, np.zeros(m, bool))
    assert len(rb) == n
    per_transition = rb.nbytes / len(rb)
    naive = ReplayBuffer(n, (K, 84, 84), np.uint8).nbytes / n  # capacity-sized arrays, untouched
    assert per_transition <= 7_500, per_transition
    assert naive / per_transition > 7.5
    sample = rb.sample(256)
    assert sample.obs.shape == (256, K, 84, 84) and (sample.obs[:, 1:] == sample.next_obs[:, :-1]).all(axis=(1, 2, 3)).any()
