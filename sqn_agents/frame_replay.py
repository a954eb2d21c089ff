"""Frame-deduplicated replay for stacked image observations (Atari's ``(4, 84, 84)`` uint8 stacks).

Why: consecutive observations of a frame-stacking env overlap. The stack at ``t + 1`` is the
stack at ``t`` shifted by one frame plus one new frame, and ``next_obs`` of a step is ``obs`` of
the following step. Storing ``obs`` and ``next_obs`` whole (``ReplayBuffer``) keeps every frame
eight times; this buffer keeps it once, so a transition costs about one 7,056-byte frame plus a
few scalars and indices, and 1M transitions fit in about 7.4 GB instead of 56 GB.

Layout
------
* **Frame ring** ``frames``, shape ``(num_frames, *frame_shape)``. Every stored frame gets a global
  id (0, 1, 2, ... in write order), lives in slot ``id % num_frames`` and is overwritten
  ``num_frames`` ids later. ``num_frames = capacity + spare``: one frame per transition plus a
  small margin (1/32) for the extra frames that episode starts cost.
* **Transition ring** of ``capacity`` rows: ``obs_frames`` and ``next_frames`` (``(capacity, K)``
  int64) hold the global ids of the ``K`` frames of ``obs`` and ``next_obs`` in stack order;
  ``actions``, ``rewards``, ``terminated`` and ``truncated`` are stored as in ``ReplayBuffer``.
  ``sample`` rebuilds stacks with one fancy index, ``frames[ids % num_frames]``.

How frames are shared (decided by comparing pixels, never by trusting the caller)
----------------------------------------------------------------------------------
* Each stream (``env_ids``: one per vector-env sub-env) remembers the frame ids of its last
  ``next_obs``. A new row's ``obs`` reuses them only if that stream's previous row was neither
  terminated nor truncated (a new episode always starts from the reset stack it was given) and
  ``obs`` equals those frames exactly. Otherwise its ``K`` frames are stored.
* ``next_obs`` reuses ``obs[1:]`` if ``next_obs[:-1] == obs[1:]`` exactly and stores one new frame;
  otherwise (not a frame stack, or a wrapper that does something else) all ``K`` frames are stored.
* A frame that is about to be stored and equals the frame just before it in its stack is not
  stored again: a reset stack padded by repeating its first frame costs one frame, and a frozen
  screen costs none.

Which transitions are valid
---------------------------
Transitions are numbered in write order (the *logical* index, slot ``logical % capacity``). The
sampleable ones are exactly the logical range ``[tail, added)``, so ``sample`` draws uniformly
from a contiguous range with one ``rng.integers`` call, like ``ReplayBuffer``. A transition
stops being valid when its row is overwritten (``tail >= added - capacity``) or when one of its
frames is overwritten. For the second, each transition carries an eviction ``key`` no larger
than the smallest frame id it references, and keys are kept non-decreasing in logical order: a
new transition whose key is smaller lowers the keys of the (few, recent) transitions above it.
When frame ids below ``frames_written - num_frames`` are overwritten, every transition with a
smaller key is at the front of the range, and ``tail`` moves past them (a binary search). The
lowering evicts a few transitions slightly early (with interleaved streams, by about
``K * streams`` frames); a stored frame older than ``reuse_window`` (half the frame ring) is never
reused, which bounds that effect for streams that pause for a long time.

n-step returns
--------------
As in ``ReplayBuffer``: a row's ``succ`` is the logical index of its stream's next row when that
row's ``obs`` continued it (the ``link`` decided above, by pixels), and ``sample(n_step=n)``
follows the links (``replay.n_step_returns``). A successor is newer than its row, so it stays
valid as long as the row does.

Observations of several parts
-----------------------------
A ``Dict`` observation such as ``{"frames": (4, 84, 84) uint8, "score": (2,) float32}`` (with the
legal-action mask as one more part) is stored with its one frame-stack part, ``frame_part``,
deduplicated as above and every other part per row, each in its own dtype, as ``ReplayBuffer``
stores parts (``obs_shape``/``obs_dtype`` are then mappings from part name to shape and dtype, and
``obs``/``next_obs`` dicts of arrays). A row is linked to its stream's previous row only if the
other parts continue it too (its ``obs`` parts equal the previous ``next_obs`` parts), so links,
and hence n-step returns, are exactly those of ``ReplayBuffer``; frames are shared by pixels
alone. ``learner.make_replay`` picks this buffer when exactly one part is a frame stack.

Device storage
--------------
With ``device`` (``SQNConfig.replay_on_device``) the frame ring is a torch tensor there and stacks
are gathered there, as ``ReplayBuffer`` does with its observations; everything else (ids, keys,
links, the per-row scalars and other parts, each a few numbers per row) stays in numpy, and a
sampled batch's host arrays go to the device with it. Deciding whether a stream's new ``obs``
reuses its remembered stack compares it with a host copy of that stack (``stream_pixels``),
never with the ring.

If observations do not overlap (e.g. RGB images mistaken for stacks), each transition needs up
to ``2K`` frames, the frame ring rather than ``capacity`` limits ``len()``, and a
``FrameStackCapacityWarning`` says so; use ``ReplayBuffer`` for such observations.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Mapping

import numpy as np
import torch

from sqn_agents.layout import observation_layout
from sqn_agents.replay import (
    Batch,
    ObsArrays,
    allocate,
    allocate_obs,
    check_fits,
    check_links,
    mid_discounts,
    n_step_chain,
    n_step_returns,
    obs_state,
    on_device,
    put,
    put_obs,
    rows_equal,
    take,
    take_obs,
    to_device,
    to_host,
)

# Rows handled per vectorised step of ``add``: bounds the temporaries of the pixel comparisons
# (256 rows of 4x84x84 is 7 MB) for callers that add a long trajectory at once.
_ADD_CHUNK = 256

# The arrays of ``state_dict``, in its order.
_STATE_NAMES = (
    "frames", "obs_frames", "next_frames", "keys", "actions", "rewards", "terminated", "truncated",
    "stream_ids", "stream_frames", "frames_written", "added",
)
# Arrays added with n-step returns; a state saved before them loads with no links (one-step returns).
_LINK_NAMES = ("succ", "stream_rows")


def is_frame_stack_space(obs_shape: tuple[int, ...], obs_dtype: np.dtype | type) -> bool:
    """Whether observations look like channels-first uint8 frame stacks such as ``(4, 84, 84)``
    (``layout.observation_layout`` decides; correctness never depends on it, only memory does)."""
    return observation_layout(obs_shape, obs_dtype).frame_stack


class FrameStackCapacityWarning(UserWarning):
    """The observations do not overlap as frame stacks, so the buffer holds fewer transitions than its capacity."""


def _same(a: np.ndarray, b: np.ndarray, keep: int) -> np.ndarray:
    """Exact equality of ``a`` and ``b`` reduced over every axis after the first ``keep``."""
    return (a == b).all(axis=tuple(range(keep, a.ndim)))


class FrameStackReplayBuffer:
    """Ring buffer with uniform sampling that stores each frame of overlapping frame stacks once.

    Same interface as ``ReplayBuffer``; ``stack_axis`` is the axis of an observation along
    which frames are stacked (0 for channels-first ``(4, 84, 84)``). For observations of several
    parts (``obs_shape`` a mapping), ``frame_part`` names the frame-stack part; the others are
    stored per row (see the module docstring). ``device``: as ``ReplayBuffer``'s, for the frame ring.

    >>> import numpy as np
    >>> rb = FrameStackReplayBuffer(capacity=4, obs_shape=(2, 3, 3), obs_dtype=np.uint8, seed=0)
    >>> f = np.arange(4 * 9, dtype=np.uint8).reshape(4, 3, 3)  # frames 0..3
    >>> obs, next_obs = f[None, 0:2], f[None, 1:3]
    >>> rb.add(obs, np.zeros((1, 1)), np.ones(1), next_obs, np.zeros(1, bool), np.zeros(1, bool))
    >>> rb.add(next_obs, np.zeros((1, 1)), np.ones(1), f[None, 2:4], np.zeros(1, bool), np.zeros(1, bool))
    >>> len(rb), rb.frames_written  # two transitions, four distinct frames
    (2, 4)
    """

    optional_state = _LINK_NAMES

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...] | Mapping[str, tuple[int, ...]],
        obs_dtype: np.dtype | type | Mapping[str, np.dtype | type],
        action_dims: int = 1,
        seed: int | None = None,
        stack_axis: int = 0,
        frame_part: str | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity}")
        if isinstance(obs_shape, Mapping):  # named parts: one frame stack, the others stored per row
            if frame_part not in obs_shape:
                raise ValueError(f"frame_part must name one of the observation parts {list(obs_shape)}, got {frame_part!r}")
            if not isinstance(obs_dtype, Mapping) or set(obs_dtype) != set(obs_shape):
                raise ValueError(f"obs_dtype must map the same part names as obs_shape {list(obs_shape)}, got {obs_dtype!r}")
            self.obs_shape: tuple[int, ...] | dict[str, tuple[int, ...]] = {
                k: tuple(int(s) for s in v) for k, v in obs_shape.items()}
            self.obs_dtype: np.dtype | dict[str, np.dtype] = {k: np.dtype(obs_dtype[k]) for k in obs_shape}
            stack_shape, self.frame_dtype = self.obs_shape[frame_part], self.obs_dtype[frame_part]
        else:
            if frame_part is not None:
                raise ValueError(f"frame_part {frame_part!r} names a part, but obs_shape {obs_shape} is one shape")
            self.obs_shape = stack_shape = tuple(int(s) for s in obs_shape)
            self.obs_dtype = self.frame_dtype = np.dtype(obs_dtype)
        if not stack_shape or not -len(stack_shape) <= stack_axis < len(stack_shape):
            raise ValueError(f"stack_axis {stack_axis} is not an axis of observations of shape {stack_shape}")
        self.capacity = int(capacity)
        self.frame_part = frame_part
        self.stack_shape = stack_shape  # one frame stack (the frame part's shape)
        self.action_dims = int(action_dims)
        self.stack_axis = stack_axis % len(stack_shape)
        self.stack_size = stack_shape[self.stack_axis]
        if self.stack_size < 1:
            raise ValueError(f"observations of shape {stack_shape} have no frame along axis {stack_axis}")
        self.frame_shape = stack_shape[: self.stack_axis] + stack_shape[self.stack_axis + 1 :]
        k = self.stack_size
        # The other parts, stored per row as in ReplayBuffer (none for one Box of stacks).
        shapes, dtypes = (self.obs_shape, self.obs_dtype) if frame_part is not None else ({}, {})
        self.extra_shape = {name: shape for name, shape in shapes.items() if name != frame_part}
        self.extra_dtype = {name: dtypes[name] for name in self.extra_shape}
        self.extra_obs = allocate_obs(self.capacity, self.extra_shape, self.extra_dtype)
        self.extra_next = allocate_obs(self.capacity, self.extra_shape, self.extra_dtype)

        self.num_frames = self.capacity + max(self.capacity // 32, 4 * k)
        self.reuse_window = self.num_frames // 2
        self.device = None if device is None else torch.device(device)
        check_fits(self.num_frames * int(np.prod(self.frame_shape)) * self.frame_dtype.itemsize, self.device)
        self.frames = allocate((self.num_frames, *self.frame_shape), self.frame_dtype, self.device)
        self.obs_frames = np.zeros((self.capacity, k), dtype=np.int64)  # global frame ids
        self.next_frames = np.zeros((self.capacity, k), dtype=np.int64)
        self.keys = np.zeros(self.capacity, dtype=np.int64)  # eviction keys, see the module docstring
        self.actions = np.zeros((self.capacity, self.action_dims), dtype=np.int64)
        self.rewards = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=np.float32)
        self.truncated = np.zeros(self.capacity, dtype=np.float32)
        self.succ = np.full(self.capacity, -1, dtype=np.int64)  # logical index of the stream's next row
        self.added = 0  # transitions ever written: the next logical index
        self.tail = 0  # logical index of the oldest valid transition
        self.frames_written = 0  # frames ever written: the next global frame id
        # Per stream, the frame ids of its last next_obs (sorted by env id; absent after a done step).
        self.stream_ids = np.zeros(0, dtype=np.int64)
        self.stream_frames = np.zeros((0, k), dtype=np.int64)
        self.stream_rows = np.zeros(0, dtype=np.int64)  # logical index of that last row (-1: unknown)
        self.stream_pixels = np.zeros((0, k, *self.frame_shape), dtype=self.frame_dtype)  # those frames, on the host
        self.rng = np.random.default_rng(seed)
        self._warned = False

    def __len__(self) -> int:
        return self.added - self.tail

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer's arrays (the full-capacity footprint; the frame ring dominates)."""
        arrays = (
            self.frames, self.obs_frames, self.next_frames, self.keys, self.actions, self.rewards,
            self.terminated, self.truncated, self.succ, self.stream_ids, self.stream_frames, self.stream_rows,
            *self.extra_obs.values(), *self.extra_next.values(), self.stream_pixels,
        )
        return sum(a.nbytes for a in arrays)

    # --- adding ---------------------------------------------------------------------------
    def add(
        self,
        obs: ObsArrays,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: ObsArrays,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_ids: np.ndarray | None = None,
    ) -> None:
        """Store ``n`` transitions (axis 0 of every argument).

        ``env_ids`` names the stream of each row (None: all rows are stream 0). Rows of one
        stream are consecutive steps of it, in order; streams may interleave freely.
        """
        rewards = np.asarray(rewards, dtype=np.float32).reshape(-1)
        n = len(rewards)
        if n == 0:
            return
        (obs, extra), (next_obs, next_extra) = self._split(obs, n, "obs"), self._split(next_obs, n, "next_obs")
        actions = np.asarray(actions).reshape(n, -1)
        if actions.shape[1] != self.action_dims:
            raise ValueError(f"actions have {actions.shape[1]} dimensions per row, expected {self.action_dims}")
        terminated = np.asarray(terminated).reshape(n) != 0
        truncated = np.asarray(truncated).reshape(n) != 0
        env_ids = np.zeros(n, np.int64) if env_ids is None else np.asarray(env_ids, dtype=np.int64).reshape(n)
        # Frames first: (n, K, *frame_shape), a view.
        obs_f, next_f = obs, next_obs
        if self.stack_axis:
            obs_f, next_f = np.moveaxis(obs, 1 + self.stack_axis, 1), np.moveaxis(next_obs, 1 + self.stack_axis, 1)
        step = min(_ADD_CHUNK, self.capacity)  # a chunk never overwrites its own rows
        for lo in range(0, n, step):  # a loop over chunks of rows, each one vectorised
            rows = slice(lo, lo + step)
            self._add_chunk(obs_f[rows], actions[rows], rewards[rows], next_f[rows],
                            terminated[rows], truncated[rows], env_ids[rows],
                            take_obs(extra, rows), take_obs(next_extra, rows))
        self._warn_if_frames_limit_capacity()

    def _split(self, obs: ObsArrays, n: int, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``n`` observations as (frame stacks, the other parts), their shapes checked."""
        if self.frame_part is None:
            parts, stacks, label = {}, np.asarray(obs, dtype=self.frame_dtype), name
        else:
            if not isinstance(obs, Mapping) or set(obs) != set(self.obs_shape):
                got = sorted(obs) if isinstance(obs, Mapping) else type(obs).__name__
                raise ValueError(f"{name} must be a dict of the parts {list(self.obs_shape)}, got {got}")
            parts = {k: np.asarray(obs[k]) for k in self.extra_shape}
            stacks, label = np.asarray(obs[self.frame_part], dtype=self.frame_dtype), f"{name}[{self.frame_part!r}]"
            for k, arr in parts.items():
                if arr.shape != (n, *self.extra_shape[k]):
                    raise ValueError(f"{name}[{k!r}] has shape {arr.shape}, expected {(n, *self.extra_shape[k])}")
        if stacks.shape != (n, *self.stack_shape):
            raise ValueError(f"{label} has shape {stacks.shape}, expected {(n, *self.stack_shape)}")
        return stacks, parts

    def _add_chunk(
        self,
        obs_f: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_f: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_ids: np.ndarray,
        extra: dict[str, np.ndarray],
        next_extra: dict[str, np.ndarray],
    ) -> None:
        """Store at most ``capacity`` rows; ``obs_f``/``next_f`` are ``(n, K, *frame_shape)``, ``extra`` and
        ``next_extra`` the other parts of ``obs`` and ``next_obs`` (empty dicts for one Box of stacks).

        Each stream's frames form a sequence; this method writes one array ``seq`` of frame ids
        holding, stream after stream, the ids every row appends to its stream's sequence: the
        stream's remembered stack (if reused), the fresh ``obs`` frames (if not reused), then
        one new frame (shifted ``next_obs``) or ``K`` fresh ones. A row's ``obs`` is then the
        ``K`` entries of ``seq`` ending at ``obs_end``, its ``next_obs`` those ending at ``next_end``.
        """
        k, num_frames = self.stack_size, self.num_frames
        n = len(rewards)
        order = np.arange(n)
        if (env_ids[1:] < env_ids[:-1]).any():  # rows of one stream together, in time order
            order = np.argsort(env_ids, kind="stable")
            obs_f, next_f = obs_f[order], next_f[order]
            actions, rewards, terminated, truncated = actions[order], rewards[order], terminated[order], truncated[order]
            env_ids = env_ids[order]
            extra, next_extra = take_obs(extra, order), take_obs(next_extra, order)
        done = terminated | truncated
        first = np.ones(n, bool)
        first[1:] = env_ids[1:] != env_ids[:-1]
        last = np.ones(n, bool)
        last[:-1] = first[1:]

        # Does obs continue the stream? Within the chunk: compare with the previous row's next_obs.
        link = np.zeros(n, bool)
        inner = np.flatnonzero(~first)
        if len(inner):
            link[inner] = ~done[inner - 1] & _same(obs_f[inner], next_f[inner - 1], 1)
        # For a stream's first row: compare with the frames remembered from an earlier add.
        heads = np.flatnonzero(first)
        at = np.minimum(np.searchsorted(self.stream_ids, env_ids[heads]), max(len(self.stream_ids) - 1, 0))
        known = np.zeros(len(heads), bool)
        if len(self.stream_ids):
            known = self.stream_ids[at] == env_ids[heads]
        remembered, remembered_rows = self.stream_frames[at[known]], self.stream_rows[at[known]]
        fresh_enough = remembered.min(axis=1) >= self.frames_written - self.reuse_window
        heads = heads[known][fresh_enough]
        remembered, remembered_rows = remembered[fresh_enough], remembered_rows[fresh_enough]
        same = _same(obs_f[heads], self.stream_pixels[at[known]][fresh_enough], 1)  # = frames[remembered % num_frames]
        heads, remembered, remembered_rows = heads[same], remembered[same], remembered_rows[same]
        link[heads] = True
        # Is next_obs obs shifted by one frame plus a new one?
        shift = _same(next_f[:, :-1], obs_f[:, 1:], 1)

        # Lay out seq: how many entries each row appends, and where its stacks end.
        prefix = np.zeros(n, np.int64)
        prefix[heads] = k
        n_obs = np.where(link, 0, k)
        count = prefix + n_obs + np.where(shift, 1, k)
        end = np.cumsum(count)
        start = end - count
        obs_end = start + prefix + n_obs - 1  # for a row linked inside the chunk: the previous row's end
        next_end = end - 1
        seq = np.zeros(end[-1], np.int64)
        defined = np.zeros(end[-1], bool)  # entries not yet defined repeat the entry before them
        prefix_pos = start[heads, None] + np.arange(k)
        seq[prefix_pos] = remembered
        defined[prefix_pos] = True

        # New frames, in pieces of (source stacks, rows, frame indices, seq positions). A frame
        # equal to the one before it in its stack is not new: its entry repeats that one's id.
        pieces = []
        ro = np.flatnonzero(~link)  # obs stored whole
        if len(ro):
            new = np.ones((len(ro), k), bool)
            new[:, 1:] = ~_same(obs_f[ro, 1:], obs_f[ro, :-1], 2)
            r, c = np.nonzero(new)
            pieces.append((obs_f, ro[r], c, start[ro[r]] + c))
        rn = np.flatnonzero(~shift)  # next_obs stored whole
        if len(rn):
            new = np.empty((len(rn), k), bool)
            new[:, 0] = ~_same(next_f[rn, 0], obs_f[rn, k - 1], 1)
            new[:, 1:] = ~_same(next_f[rn, 1:], next_f[rn, :-1], 2)
            r, c = np.nonzero(new)
            pieces.append((next_f, rn[r], c, obs_end[rn[r]] + 1 + c))
        rs = np.flatnonzero(shift)  # next_obs shifted: one new frame
        if len(rs):
            rows = rs[~_same(next_f[rs, k - 1], obs_f[rs, k - 1], 1)]
            pieces.append((next_f, rows, np.full(len(rows), k - 1), obs_end[rows] + 1))
        positions = np.concatenate([piece[3] for piece in pieces]) if pieces else np.zeros(0, np.int64)
        ids = np.empty(len(positions), np.int64)  # global ids in seq order, so a stream's frames age in order
        ids[np.argsort(positions, kind="stable")] = self.frames_written + np.arange(len(positions))
        seq[positions] = ids
        defined[positions] = True
        if not defined.all():
            seq = seq[np.maximum.accumulate(np.where(defined, np.arange(len(seq)), 0))]

        # Write the new frames; if the chunk wrote more than the ring holds, only the newest survive.
        written = self.frames_written + len(positions)
        oldest = written - num_frames
        taken = 0
        for source, rows, cols, pos in pieces:
            piece_ids = ids[taken : taken + len(pos)]
            taken += len(pos)
            live = piece_ids >= oldest
            put(self.frames, piece_ids[live] % num_frames, source[rows[live], cols[live]])
        self.frames_written = written

        # Write the transitions in the caller's row order (the ring stays first in, first out),
        # with keys made non-decreasing in that order (see the module docstring).
        window = np.arange(1 - k, 1)
        obs_ids, next_ids = seq[obs_end[:, None] + window], seq[next_end[:, None] + window]
        keys = np.empty(n, np.int64)
        keys[order] = np.minimum(obs_ids.min(axis=1), next_ids.min(axis=1))
        keys = np.minimum.accumulate(keys[::-1])[::-1]
        self._lower_keys_to(int(keys[0]))
        self.keys[(self.added + np.arange(n)) % self.capacity] = keys
        logical = self.added + order  # the logical index of each (stream-sorted) row
        slots = logical % self.capacity
        self.obs_frames[slots], self.next_frames[slots] = obs_ids, next_ids
        self.actions[slots], self.rewards[slots] = actions, rewards
        self.terminated[slots], self.truncated[slots] = terminated, truncated
        put_obs(self.extra_obs, slots, extra)
        put_obs(self.extra_next, slots, next_extra)
        self.succ[slots] = -1
        self.added += n
        self.tail = max(self.tail, self.added - self.capacity)
        self._evict_keys_below(oldest)
        # n-step links: a linked row's predecessor is the previous row of its stream in this chunk,
        # or the stream's remembered row; only predecessors still in the buffer get the link.
        prev = np.full(n, -1, np.int64)
        prev[inner] = logical[inner - 1]
        prev[heads] = remembered_rows
        linked = np.flatnonzero(link & (prev >= self.tail))
        if self.extra_shape and len(linked):  # the other parts must continue the stream too (as ReplayBuffer links)
            linked = linked[rows_equal(take_obs(self.extra_next, prev[linked] % self.capacity),
                                       take_obs(self.extra_obs, slots[linked]))]
        self.succ[prev[linked] % self.capacity] = logical[linked]

        # Remember each stream's last next_obs, forget streams whose episode ended and stale stacks.
        ends = np.flatnonzero(last)
        at = np.minimum(np.searchsorted(env_ids[ends], self.stream_ids), len(ends) - 1)
        keep = env_ids[ends][at] != self.stream_ids  # streams absent from this chunk
        going = ends[~done[ends]]
        stream_ids = np.concatenate([self.stream_ids[keep], env_ids[going]])
        stream_frames = np.concatenate([self.stream_frames[keep], next_ids[going]])
        stream_rows = np.concatenate([self.stream_rows[keep], logical[going]])
        stream_pixels = np.concatenate([self.stream_pixels[keep], next_f[going]])
        by_id = np.argsort(stream_ids)
        fresh = by_id[stream_frames[by_id].min(axis=1) >= self.frames_written - self.reuse_window]
        self.stream_ids, self.stream_frames, self.stream_rows = stream_ids[fresh], stream_frames[fresh], stream_rows[fresh]
        self.stream_pixels = stream_pixels[fresh]

    def _key_at(self, logical: int) -> int:
        return int(self.keys[logical % self.capacity])

    def _lower_keys_to(self, key: int) -> None:
        """Keep keys non-decreasing before appending ``key``: lower the valid ones above it."""
        if self.added > self.tail and self._key_at(self.added - 1) > key:  # rare: checked in O(1) first
            first_above = bisect.bisect_right(range(self.tail, self.added), key, key=self._key_at) + self.tail
            self.keys[np.arange(first_above, self.added) % self.capacity] = key

    def _evict_keys_below(self, oldest_frame: int) -> None:
        """Drop the transitions that may reference a frame id below ``oldest_frame`` (overwritten)."""
        if self.added > self.tail and self._key_at(self.tail) < oldest_frame:
            self.tail += bisect.bisect_left(range(self.tail, self.added), oldest_frame, key=self._key_at)

    def _warn_if_frames_limit_capacity(self) -> None:
        held = min(self.added, self.capacity)
        if not self._warned and self.frames_written > self.num_frames and len(self) < 0.75 * held:
            self._warned = True
            warnings.warn(
                f"FrameStackReplayBuffer holds {len(self)} transitions where {held} fit: the observations do not "
                f"overlap as frame stacks ({self.frames_written / self.added:.2f} frames stored per transition), so "
                "its frame ring fills first; use the uniform ReplayBuffer (replay='uniform') for them",
                FrameStackCapacityWarning,
                stacklevel=3,
            )

    # --- sampling ---------------------------------------------------------------------------
    def sample(self, batch_size: int, n_step: int = 1, gamma: float = 0.99, intermediate: bool = False) -> Batch:
        """Sample ``batch_size`` transitions uniformly, with replacement (``n_step``: see ``ReplayBuffer.sample``)."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer; call add() first")
        first = self.tail + self.rng.integers(0, len(self), size=batch_size)
        slots = first % self.capacity
        if n_step == 1:
            return on_device(Batch(
                obs=self._observations(self.obs_frames, self.extra_obs, slots),
                actions=self.actions[slots],
                rewards=self.rewards[slots],
                next_obs=self._observations(self.next_frames, self.extra_next, slots),
                terminated=self.terminated[slots],
            ), self.device)
        last, returns, discounts = n_step_returns(self.succ, self.rewards, first, n_step, gamma)
        end = last % self.capacity
        mid = {}
        if intermediate:
            chain, steps = n_step_chain(self.succ, first, n_step)
            mid = {"mid_obs": self._observations(self.next_frames, self.extra_next, chain[:, :-1] % self.capacity),
                   "mid_discounts": mid_discounts(steps, n_step, gamma)}
        return on_device(Batch(
            obs=self._observations(self.obs_frames, self.extra_obs, slots),
            actions=self.actions[slots],
            rewards=returns,
            next_obs=self._observations(self.next_frames, self.extra_next, end),
            terminated=self.terminated[end],
            discounts=discounts,
            **mid,
        ), self.device)

    def _observations(self, frame_ids: np.ndarray, extra: dict[str, np.ndarray], slots: np.ndarray) -> ObsArrays:
        """The observations of rows ``slots`` (any shape): stacks rebuilt from the rows' frame ids
        (``obs_frames`` or ``next_frames``), with the rows' other parts (``extra``) when there are parts.
        With the ring on a device, all of it is there (the other parts, a few numbers per row, copied)."""
        ids = frame_ids[slots]  # (*slots.shape, K)
        stacks = self._stacks(ids.reshape(-1, self.stack_size)).reshape(*slots.shape, *self.stack_shape)
        if self.frame_part is None:
            return stacks
        parts = take_obs(extra, slots)
        if self.device is not None:
            parts = {k: to_device(v, self.device) for k, v in parts.items()}
        return {k: stacks if k == self.frame_part else parts[k] for k in self.obs_shape}

    def _stacks(self, frame_ids: np.ndarray) -> np.ndarray | torch.Tensor:
        """Observations ``(B, *obs_shape)`` rebuilt from ``(B, K)`` global frame ids (on the ring's device)."""
        stacks = take(self.frames, frame_ids % self.num_frames)  # (B, K, *frame_shape)
        if self.stack_axis == 0:
            return stacks
        if isinstance(stacks, torch.Tensor):
            return stacks.movedim(1, 1 + self.stack_axis).contiguous()
        return np.ascontiguousarray(np.moveaxis(stacks, 1, 1 + self.stack_axis))

    # --- checkpointing: plain arrays, no pickle ----------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that fully describe the buffer: the live frames in id order, the valid transitions
        in logical order, the per-stream memory and the counters (0-d int64)."""
        frame_ids = np.arange(max(0, self.frames_written - self.num_frames), self.frames_written)
        slots = np.arange(self.tail, self.added) % self.capacity
        return {
            "frames": to_host(take(self.frames, frame_ids % self.num_frames)),
            "obs_frames": self.obs_frames[slots],
            "next_frames": self.next_frames[slots],
            "keys": self.keys[slots],
            "actions": self.actions[slots],
            "rewards": self.rewards[slots],
            "terminated": self.terminated[slots],
            "truncated": self.truncated[slots],
            "stream_ids": self.stream_ids.copy(),
            "stream_frames": self.stream_frames.copy(),
            "frames_written": np.array(self.frames_written, dtype=np.int64),
            "added": np.array(self.added, dtype=np.int64),
            "succ": self.succ[slots],
            "stream_rows": self.stream_rows.copy(),
            **obs_state("obs", take_obs(self.extra_obs, slots)),
            **obs_state("next_obs", take_obs(self.extra_next, slots)),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a ``state_dict``. Checks the whole layout first (a ValueError changes nothing),
        so that no frame id of a loaded transition can point outside the frames that were saved."""
        k = self.stack_size
        extra_stores = {**obs_state("obs", self.extra_obs), **obs_state("next_obs", self.extra_next)}
        missing = [name for name in (*_STATE_NAMES, *extra_stores) if name not in state]
        if missing:
            raise ValueError(f"replay state lacks arrays {missing}")
        arr = {name: np.asarray(state[name]) for name in _STATE_NAMES}
        for name in ("frames_written", "added"):
            if arr[name].shape != () or arr[name].dtype.kind not in "iu" or int(arr[name]) < 0:
                raise ValueError(f"replay state '{name}' must be a non-negative integer scalar, got {arr[name]!r}")
        written, added = int(arr["frames_written"]), int(arr["added"])
        n = len(arr["keys"]) if arr["keys"].ndim == 1 else -1
        n_streams = len(arr["stream_ids"]) if arr["stream_ids"].ndim == 1 else -1
        expected = {
            "frames": (min(written, self.num_frames), *self.frame_shape),
            "obs_frames": (n, k), "next_frames": (n, k), "keys": (n,), "actions": (n, self.action_dims),
            "rewards": (n,), "terminated": (n,), "truncated": (n,),
            "stream_ids": (n_streams,), "stream_frames": (n_streams, k),
        }
        for name, shape in expected.items():
            if arr[name].shape != shape:
                raise ValueError(f"replay state '{name}' has shape {arr[name].shape}, expected {shape}")
        for name in ("obs_frames", "next_frames", "keys", "actions", "stream_ids", "stream_frames"):
            if arr[name].dtype.kind not in "iu":
                raise ValueError(f"replay state '{name}' has dtype {arr[name].dtype}, expected integers")
        if arr["frames"].dtype != self.frame_dtype:
            raise ValueError(f"replay state 'frames' has dtype {arr['frames'].dtype}, expected {self.frame_dtype}")
        extra = {name: np.asarray(state[name]) for name in extra_stores}
        for name, store in extra_stores.items():
            if extra[name].shape != (n, *store.shape[1:]) or extra[name].dtype != store.dtype:
                raise ValueError(f"replay state '{name}' has shape {extra[name].shape} and dtype {extra[name].dtype}, "
                                 f"expected {(n, *store.shape[1:])} and {store.dtype}")
        if n > min(self.capacity, added):
            raise ValueError(f"replay state holds {n} transitions but capacity is {self.capacity} and {added} were added")
        lowest = written - len(arr["frames"])  # the oldest frame id that was saved
        for name in ("obs_frames", "next_frames", "stream_frames"):
            if arr[name].size and (arr[name].min() < lowest or arr[name].max() >= written):
                raise ValueError(f"replay state '{name}' references frames outside the saved ids [{lowest}, {written})")
        keys = arr["keys"]
        if n and (
            (np.diff(keys) < 0).any()
            or (keys > np.minimum(arr["obs_frames"].min(axis=1), arr["next_frames"].min(axis=1))).any()
            or keys[0] < written - self.num_frames
        ):
            raise ValueError("replay state 'keys' are not non-decreasing eviction keys of live frames")
        if (np.diff(arr["stream_ids"]) <= 0).any():
            raise ValueError("replay state 'stream_ids' are not sorted and unique")
        if not np.isfinite(arr["rewards"]).all():
            raise ValueError("replay state 'rewards' contains NaN or infinity")
        if all(name in state for name in _LINK_NAMES):
            succ, stream_rows = np.asarray(state["succ"]), np.asarray(state["stream_rows"])
            if succ.shape != (n,) or stream_rows.shape != (n_streams,):
                raise ValueError(f"replay state 'succ'/'stream_rows' have shapes {succ.shape}/{stream_rows.shape}, "
                                 f"expected ({n},)/({n_streams},)")
            check_links(succ, added - n + np.arange(n), added, "succ")
            check_links(stream_rows, np.full(n_streams, -1), added, "stream_rows")
        else:
            succ, stream_rows = np.full(n, -1, np.int64), np.full(n_streams, -1, np.int64)
        for name in ("terminated", "truncated"):
            if not ((arr[name] == 0) | (arr[name] == 1)).all():
                raise ValueError(f"replay state '{name}' holds values other than 0 and 1")

        put(self.frames, np.arange(lowest, written) % self.num_frames, arr["frames"])
        slots = np.arange(added - n, added) % self.capacity
        self.obs_frames[slots], self.next_frames[slots], self.keys[slots] = arr["obs_frames"], arr["next_frames"], keys
        self.actions[slots], self.rewards[slots] = arr["actions"], arr["rewards"]
        self.terminated[slots], self.truncated[slots] = arr["terminated"], arr["truncated"]
        for name, store in extra_stores.items():
            store[slots] = extra[name]
        self.frames_written, self.added, self.tail = written, added, added - n
        self.stream_ids = arr["stream_ids"].astype(np.int64)
        self.stream_frames = arr["stream_frames"].astype(np.int64)
        self.stream_pixels = arr["frames"][self.stream_frames - lowest]  # the saved frames are ids lowest .. written - 1
        self.succ[:] = -1
        self.succ[slots] = succ
        self.stream_rows = stream_rows.astype(np.int64)
