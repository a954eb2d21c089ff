"""The chunk encoding of sqn_agents.transport: rebuilt stacks equal the originals exactly, across resets,
truncations, frozen screens, non-shifting observations and restarts (a new encoder needs a new decoder)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from envs import make_stacked_env

from sqn_agents.actor import TransitionIntake
from sqn_agents.transport import Chunk, ChunkDecoder, ChunkEncoder

SHAPE = (4, 6, 6)


class Tee:
    """A sink that keeps copies of every row and passes them on to the encoder."""

    def __init__(self, encoder: ChunkEncoder) -> None:
        self.encoder, self.rows = encoder, []

    def add(self, *row: np.ndarray) -> None:
        self.rows.append(tuple(np.array(x) for x in row))
        self.encoder.add(*row)


def _concat(rows: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    return [np.concatenate(c) for c in zip(*rows, strict=True)]


def _decode_all(decoder: ChunkDecoder, chunks: list[Chunk]) -> list[np.ndarray]:
    return _concat([tuple(decoder.decode(c)) for c in chunks])


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_stacks_from_a_vector_env_round_trip_exactly_across_resets_and_truncations(mode):
    autoreset = {"next_step": gym.vector.AutoresetMode.NEXT_STEP, "same_step": gym.vector.AutoresetMode.SAME_STEP}[mode]
    envs = gym.vector.SyncVectorEnv([make_stacked_env for _ in range(3)], autoreset_mode=autoreset)
    encoder = ChunkEncoder(SHAPE, np.uint8, frame_stack=True)
    tee = Tee(encoder)
    intake = TransitionIntake(envs.single_observation_space, envs.single_action_space, tee, mode)
    obs, _ = envs.reset(seed=0)
    chunks, rng, dones = [], np.random.default_rng(0), 0
    for _ in range(200):
        actions = rng.integers(0, 2, 3)
        next_obs, rewards, terminated, truncated, info = envs.step(actions)
        intake.observe(obs, actions, rewards, next_obs, terminated, truncated, info=info)
        dones += int((terminated | truncated).sum())
        obs = next_obs
        if rng.random() < 0.15:  # chunks of random length, some empty
            chunks.append(encoder.flush())
    chunks.append(encoder.flush())
    sent = _concat(tee.rows)
    got = _decode_all(ChunkDecoder(SHAPE, np.uint8, frame_stack=True), chunks)
    assert dones > 20 and any(r[5].any() for r in tee.rows)  # episode ends and truncations both happened
    for name, a, b in zip(["obs", "actions", "rewards", "next_obs", "terminated", "truncated", "env_ids"], sent, got,
                          strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    # every frame crosses once: far fewer than the 8 frames per transition of whole obs/next_obs stacks
    frames = sum(len(c.frames) for c in chunks)
    assert frames < 1.8 * len(sent[2])


def test_hand_made_streams_with_resets_frozen_screens_and_non_shifting_observations_round_trip():
    rng = np.random.default_rng(1)
    encoder, decoder = ChunkEncoder((3, 2, 2), np.uint8, True), ChunkDecoder((3, 2, 2), np.uint8, True)
    last = {e: rng.integers(0, 4, (3, 2, 2), dtype=np.uint8) for e in range(4)}
    sent, chunks = [], []
    for _ in range(300):
        env_ids = np.sort(rng.choice(4, size=rng.integers(1, 5), replace=False))
        obs, next_obs = [], []
        for e in env_ids:
            o = last[e] if rng.random() < 0.8 else rng.integers(0, 4, (3, 2, 2), dtype=np.uint8)  # manual reset
            kind = rng.random()
            if kind < 0.7:  # a frame stack's shift (frames from 4 levels: often frozen)
                n = np.concatenate([o[1:], rng.integers(0, 4, (1, 2, 2), dtype=np.uint8)])
            elif kind < 0.85:  # reset padding: one frame repeated
                n = np.repeat(rng.integers(0, 4, (1, 2, 2), dtype=np.uint8), 3, axis=0)
            else:  # something that is not a shift at all
                n = rng.integers(0, 4, (3, 2, 2), dtype=np.uint8)
            obs.append(o)
            next_obs.append(n)
            last[e] = n
        m = len(env_ids)
        row = (np.stack(obs), rng.integers(0, 3, (m, 1)), rng.normal(size=m).astype(np.float32), np.stack(next_obs),
               rng.random(m) < 0.1, rng.random(m) < 0.05, env_ids)
        encoder.add(*row)
        sent.append(row)
        if rng.random() < 0.2:
            chunks.append(encoder.flush())
    chunks.append(encoder.flush())
    for a, b in zip(_concat(sent), _decode_all(decoder, chunks), strict=True):
        assert np.array_equal(a, b)


def test_a_restarted_encoder_needs_a_fresh_decoder_and_chunks_must_arrive_in_order():
    def stream(seed: int) -> list[Chunk]:
        env = make_stacked_env()
        encoder = ChunkEncoder(SHAPE, np.uint8, True)
        intake = TransitionIntake(env.observation_space, env.action_space, encoder)
        obs, _ = env.reset(seed=seed)
        chunks = []
        for t in range(60):
            next_obs, r, term, trunc, _ = env.step(0)
            intake.observe(obs, 0, r, next_obs, term, trunc)
            obs = env.reset()[0] if term or trunc else next_obs
            if t % 10 == 9:
                chunks.append(encoder.flush())
        return chunks

    first, restarted = stream(0), stream(1)
    decoder = ChunkDecoder(SHAPE, np.uint8, True)
    for c in first[:3]:
        decoder.decode(c)
    with pytest.raises(ValueError, match="expected chunk 3"):
        decoder.decode(restarted[0])  # the restarted actor's seq starts again at 0
    with pytest.raises(ValueError, match="expected chunk 3"):
        decoder.decode(first[4])  # a gap
    fresh = ChunkDecoder(SHAPE, np.uint8, True)
    assert sum(len(fresh.decode(c)) for c in restarted) == 60
    with pytest.raises(TypeError, match="Chunk"):
        fresh.decode({"seq": 6})


def test_a_decoder_refuses_frames_it_never_received():
    encoder = ChunkEncoder((2, 1, 1), np.uint8, True)
    f = np.arange(4, dtype=np.uint8).reshape(4, 1, 1)
    no = np.zeros(1, bool)
    encoder.add(f[None, 0:2], np.zeros((1, 1)), np.ones(1), f[None, 1:3], no, no)
    encoder.flush()  # chunk 0 is lost ...
    encoder.add(f[None, 1:3], np.zeros((1, 1)), np.ones(1), f[None, 2:4], no, no)
    chunk = encoder.flush()
    decoder = ChunkDecoder((2, 1, 1), np.uint8, True)
    decoder.expected_seq = 1  # ... and the decoder is told to skip it
    with pytest.raises(ValueError, match="neither sent nor kept"):
        decoder.decode(chunk)


def test_vectors_travel_as_they_are():
    encoder, decoder = ChunkEncoder((3,), np.float32, False), ChunkDecoder((3,), np.float32, False)
    obs = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    encoder.add(obs, np.zeros((2, 1)), np.ones(2), 2 * obs, np.zeros(2, bool), np.ones(2, bool), np.array([0, 1]))
    obs[:] = 0  # the caller reuses its array: the chunk kept a copy
    chunk = encoder.flush()
    assert chunk.frames is None and chunk.obs.dtype == np.float32
    rows = decoder.decode(chunk)
    assert (rows.obs != 0).all() and np.array_equal(rows.next_obs, 2 * rows.obs) and rows.truncated.all()
    assert len(decoder.decode(encoder.flush())) == 0
    with pytest.raises(ValueError, match="frame_stack"):
        ChunkDecoder(SHAPE, np.uint8, True).decode(chunk)


def test_an_add_with_a_repeated_or_negative_stream_is_refused():
    encoder = ChunkEncoder((2, 1, 1), np.uint8, True)
    stacks, no = np.zeros((2, 2, 1, 1), np.uint8), np.zeros(2, bool)
    with pytest.raises(ValueError, match="repeat a stream"):
        encoder.add(stacks, np.zeros((2, 1)), np.ones(2), stacks, no, no, np.array([1, 1]))
    with pytest.raises(ValueError, match="env_ids must be >= 0"):
        encoder.add(stacks, np.zeros((2, 1)), np.ones(2), stacks, no, no, np.array([0, -1]))
    assert len(encoder) == 0 and len(encoder.flush()) == 0  # nothing half-written
    with pytest.raises(ValueError, match="frame_stack=True needs stacks"):
        ChunkEncoder((3,), np.float32, True)
