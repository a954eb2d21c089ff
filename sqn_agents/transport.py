"""What travels from an env actor to the learner: chunks of transitions, frame stacks as new frames.

Why: consecutive frame-stack observations overlap (the stack at ``t + 1`` is the stack at ``t``
shifted by one frame plus one new frame, and ``next_obs`` of a step is ``obs`` of the next),
so sending ``obs`` and ``next_obs`` whole sends each Atari frame eight times. Here a chunk
carries every frame once:

* ``ChunkEncoder`` (on the actor) has the replay's ``add`` signature, so a
  ``TransitionIntake`` writes into it. For frame stacks it gives every frame it sends an id
  (0, 1, 2, ... in send order) and describes each row's ``obs`` and ``next_obs`` as ``K`` frame
  ids. A row's ``obs`` reuses the ids of its stream's previous ``next_obs`` when the stream did
  not just end an episode and the pixels are equal; otherwise its frames are sent (the whole
  stack at an episode start, a repeated padding frame once). ``next_obs`` reuses ``obs[1:]`` when
  the pixels say it is the shifted stack and sends one new frame; otherwise all of it.
  Everything is decided by comparing pixels, so the rebuilt stacks are exactly the originals.
* ``ChunkDecoder`` (on the learner) keeps the frames that later chunks may refer to (the last
  ``next_obs`` of each live stream, listed by the encoder in ``carry_ids``) and rebuilds the
  stacks with one fancy index. Chunks must arrive in order (``seq``); a gap is an error.

Vector (and any non-frame-stack) observations travel as they are.

Pure numpy: no torch, no Ray.

>>> import numpy as np
>>> enc, dec = ChunkEncoder((2, 1, 1), np.uint8, frame_stack=True), ChunkDecoder((2, 1, 1), np.uint8, frame_stack=True)
>>> f = np.arange(5, dtype=np.uint8).reshape(5, 1, 1)
>>> for t in range(3):  # one stream: stacks (0,1) -> (1,2) -> (2,3) -> (3,4)
...     enc.add(f[None, t:t + 2], np.zeros((1, 1)), np.ones(1), f[None, t + 1:t + 3], np.zeros(1, bool), np.zeros(1, bool))
>>> chunk = enc.flush()
>>> len(chunk.frames)  # 2 frames of the first obs, then one new frame per step
5
>>> rows = dec.decode(chunk)
>>> bool((rows.next_obs[:, :, 0, 0] == [[1, 2], [2, 3], [3, 4]]).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """Transitions as they travel. Frame stacks: ``frames`` holds the new frames (ids
    ``first_frame_id + arange(len(frames))``) and ``obs`` / ``next_obs`` are ``(n, K)`` int64 frame
    ids; otherwise ``frames`` is None and ``obs`` / ``next_obs`` are the observations."""

    seq: int
    obs: np.ndarray
    next_obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    env_ids: np.ndarray
    frames: np.ndarray | None = None
    first_frame_id: int = 0
    carry_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (what the object store moves, less a small header)."""
        arrays = [self.obs, self.next_obs, self.actions, self.rewards, self.terminated, self.truncated,
                  self.env_ids, self.frames, self.carry_ids]
        return sum(a.nbytes for a in arrays if a is not None)


@dataclass(frozen=True)
class Transitions:
    """Decoded rows, in the replay's ``add`` order: ``Learner.add(*rows)``."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    env_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)

    def __iter__(self):
        return iter((self.obs, self.actions, self.rewards, self.next_obs, self.terminated, self.truncated,
                     self.env_ids))


def _same_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact equality per row (axis 0), over every other axis."""
    return (a == b).reshape(len(a), int(np.prod(a.shape[1:]))).all(axis=1)


class ChunkEncoder:
    """A transition sink (the replay's ``add``) that packs what it is given into ``Chunk``s.

    ``env_ids`` name the streams (vector sub-envs); rows of one ``add`` call belong to
    different streams, and each stream's rows arrive in time order, as a ``TransitionIntake``
    writes them.
    """

    def __init__(self, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type, frame_stack: bool) -> None:
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.frame_stack = bool(frame_stack)
        if self.frame_stack and len(self.obs_shape) < 2:
            raise ValueError(f"frame_stack=True needs stacks of shape (K, ...), got obs_shape {self.obs_shape}")
        self.seq = 0
        self.next_frame_id = 0
        # Per stream (row = env id): the frame ids and pixels of its last next_obs, while its episode goes on.
        k = self.obs_shape[0] if self.frame_stack else 0
        self.live = np.zeros(0, bool)
        self.last_ids = np.zeros((0, k), np.int64)
        self.last_stack = np.zeros((0, *self.obs_shape), self.obs_dtype) if self.frame_stack else None
        self._rows: list[tuple[np.ndarray, ...]] = []
        self._frames: list[np.ndarray] = []
        self._first_frame_id = 0

    def __len__(self) -> int:
        """Rows waiting for the next ``flush``."""
        return sum(len(r[2]) for r in self._rows)

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_ids: np.ndarray | None = None,
    ) -> None:
        n = len(rewards)
        if n == 0:  # every row was an autoreset step
            return
        env_ids = np.zeros(n, np.int64) if env_ids is None else np.asarray(env_ids, np.int64).reshape(n)
        if len(np.unique(env_ids)) != n:
            raise ValueError(f"env_ids {env_ids.tolist()} repeat a stream within one add(); expected one row per stream")
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        done = np.asarray(terminated, bool) | np.asarray(truncated, bool)
        if self.frame_stack:
            obs, next_obs = self._encode_stacks(obs, next_obs, env_ids, done)
        else:
            obs, next_obs = obs.copy(), next_obs.copy()  # the caller may reuse its arrays
        self._rows.append((obs, np.array(actions, np.int64), np.array(rewards, np.float32), next_obs,
                           np.array(terminated, bool), np.array(truncated, bool), env_ids))

    def _grow(self, streams: int) -> None:
        """Room for ``streams`` streams in the per-stream arrays."""
        if streams > len(self.live):
            extra = streams - len(self.live)
            self.live = np.concatenate([self.live, np.zeros(extra, bool)])
            self.last_ids = np.concatenate([self.last_ids, np.zeros((extra, self.last_ids.shape[1]), np.int64)])
            self.last_stack = np.concatenate([self.last_stack, np.zeros((extra, *self.obs_shape), self.obs_dtype)])

    def _new_frame_ids(self, stacks: np.ndarray) -> np.ndarray:
        """Send the frames of whole stacks ``(m, K, ...)``; a frame equal to the one before it in its
        stack (a reset stack's padding) is sent once. Returns their ``(m, K)`` ids."""
        m, k = stacks.shape[:2]
        new = np.ones((m, k), bool)
        if k > 1:
            new[:, 1:] = ~(stacks[:, 1:] == stacks[:, :-1]).reshape(m, k - 1, -1).all(axis=2)
        ids = np.full((m, k), -1, np.int64)
        ids[new] = self.next_frame_id + np.arange(int(new.sum()))
        self.next_frame_id += int(new.sum())
        self._frames.append(stacks[new])
        return np.maximum.accumulate(ids, axis=1)  # a repeated frame takes the id of the one before it

    def _encode_stacks(self, obs: np.ndarray, next_obs: np.ndarray, env_ids: np.ndarray,
                       done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, k = len(obs), self.obs_shape[0]
        if n and env_ids.min() < 0:
            raise ValueError(f"env_ids must be >= 0, got {env_ids.min()}")
        self._grow(int(env_ids.max()) + 1 if n else 0)
        obs_ids = np.empty((n, k), np.int64)
        cont = self.live[env_ids] & _same_rows(obs, self.last_stack[env_ids])
        obs_ids[cont] = self.last_ids[env_ids[cont]]
        if (~cont).any():
            obs_ids[~cont] = self._new_frame_ids(obs[~cont])

        next_ids = np.empty((n, k), np.int64)
        shifted = _same_rows(next_obs[:, :-1], obs[:, 1:])
        if (~shifted).any():
            next_ids[~shifted] = self._new_frame_ids(next_obs[~shifted])
        rows = np.flatnonzero(shifted)
        next_ids[rows, :-1] = obs_ids[rows, 1:]
        # the new frame; a frozen screen (equal to obs's last frame) is not sent again
        repeat = _same_rows(next_obs[rows, -1], obs[rows, -1])
        next_ids[rows[repeat], -1] = obs_ids[rows[repeat], -1]
        fresh = rows[~repeat]
        next_ids[fresh, -1] = self.next_frame_id + np.arange(len(fresh))
        self.next_frame_id += len(fresh)
        self._frames.append(next_obs[fresh, -1])

        # Remember each stream's last stack; a stream whose episode ended starts over from a whole stack.
        self.live[env_ids] = ~done
        self.last_ids[env_ids] = next_ids
        self.last_stack[env_ids] = next_obs
        return obs_ids, next_ids

    def flush(self) -> Chunk:
        """The rows added since the last flush as one ``Chunk`` (possibly empty)."""
        if self._rows:
            cols = [np.concatenate(c) for c in zip(*self._rows, strict=True)]
        else:
            item = (self.obs_shape[0],) if self.frame_stack else self.obs_shape
            dtype = np.int64 if self.frame_stack else self.obs_dtype
            cols = [np.empty((0, *item), dtype), np.empty((0, 1), np.int64), np.empty(0, np.float32),
                    np.empty((0, *item), dtype), np.empty(0, bool), np.empty(0, bool), np.empty(0, np.int64)]
        obs, actions, rewards, next_obs, terminated, truncated, env_ids = cols
        frames = carry = None
        if self.frame_stack:
            frame_shape = self.obs_shape[1:]
            frames = np.concatenate(self._frames) if self._frames else np.empty((0, *frame_shape), self.obs_dtype)
            carry = np.unique(self.last_ids[self.live])
        chunk = Chunk(self.seq, obs, next_obs, actions, rewards, terminated, truncated, env_ids,
                      frames, self._first_frame_id, carry)
        self.seq += 1
        self._rows, self._frames, self._first_frame_id = [], [], self.next_frame_id
        return chunk


class ChunkDecoder:
    """Rebuilds the transitions of one encoder's chunks, which must arrive in order."""

    def __init__(self, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type, frame_stack: bool) -> None:
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.frame_stack = bool(frame_stack)
        self.expected_seq = 0
        self.kept_ids = np.empty(0, np.int64)
        self.kept_frames = np.empty((0, *self.obs_shape[1:]), self.obs_dtype)

    def decode(self, chunk: Chunk) -> Transitions:
        if not isinstance(chunk, Chunk):
            raise TypeError(f"decode() takes a Chunk, got {type(chunk).__name__}")
        if chunk.seq != self.expected_seq:
            raise ValueError(f"chunk {chunk.seq} arrived, expected chunk {self.expected_seq}: chunks must arrive in order")
        if (chunk.frames is not None) != self.frame_stack:
            raise ValueError(f"a chunk {'with' if chunk.frames is not None else 'without'} frames reached a decoder "
                             f"with frame_stack={self.frame_stack}")
        obs, next_obs = chunk.obs, chunk.next_obs
        if self.frame_stack:
            pool_ids = np.concatenate([self.kept_ids, chunk.first_frame_id + np.arange(len(chunk.frames))])
            pool = np.concatenate([self.kept_frames, chunk.frames])
            obs, next_obs = self._lookup(pool_ids, pool, obs), self._lookup(pool_ids, pool, next_obs)
            keep = np.searchsorted(pool_ids, chunk.carry_ids)
            self.kept_ids, self.kept_frames = chunk.carry_ids.copy(), pool[self._checked(pool_ids, keep, chunk.carry_ids)]
        self.expected_seq += 1
        return Transitions(obs, chunk.actions, chunk.rewards, next_obs, chunk.terminated, chunk.truncated, chunk.env_ids)

    @staticmethod
    def _checked(pool_ids: np.ndarray, at: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        at = np.minimum(at, max(len(pool_ids) - 1, 0))
        if wanted.size and (len(pool_ids) == 0 or (pool_ids[at] != wanted).any()):
            missing = np.setdiff1d(wanted, pool_ids)[:5].tolist()
            raise ValueError(f"a chunk refers to frames {missing} that were neither sent nor kept")
        return at

    def _lookup(self, pool_ids: np.ndarray, pool: np.ndarray, ids: np.ndarray) -> np.ndarray:
        at = self._checked(pool_ids, np.searchsorted(pool_ids, ids.reshape(-1)), ids.reshape(-1))
        return pool[at].reshape(*ids.shape, *self.obs_shape[1:])


__all__ = ["Chunk", "ChunkDecoder", "ChunkEncoder", "Transitions"]
