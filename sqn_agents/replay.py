"""Uniform experience replay: a preallocated ring buffer of transitions.

Every array is allocated once, at construction, with the dtype of the observation space,
so uint8 frames stay uint8 (4x smaller than float32) until the network casts them on the
device. ``terminated`` and ``truncated`` are stored apart: only ``terminated`` stops
bootstrapping in the TD target, ``truncated`` is kept for diagnostics and for buffers
that need to know where an episode was cut (see ``frame_replay.py``).

n-step returns are assembled when sampling, not when storing: each row remembers the logical
index of the next step of its stream (``succ``; -1 when its episode ended there or the next
step has not arrived yet), so ``sample(batch, n_step=n, gamma=g)`` follows those links for up
to ``n - 1`` steps. Stored rows stay one-step transitions, so the choice of ``n`` never
changes what is stored or checkpointed. A row is linked to its stream's previous row only if
that row was neither terminated nor truncated and its ``next_obs`` equals the new ``obs``
exactly (a manual reset, a resumed run with fresh envs and another sub-env never link).

Observations with several parts (a ``Dict`` or ``Tuple`` space, or a legal-action mask kept
next to the observation) are stored as named arrays, one per part, each in its own dtype: pass
``obs_shape`` and ``obs_dtype`` as mappings from part name to shape and dtype, and ``obs`` and
``next_obs`` as dicts of arrays. A checkpoint holds them as ``obs.<name>`` / ``next_obs.<name>``.

With ``device`` (``SQNConfig.replay_on_device``) the observations live in torch tensors on that
device, so a sampled batch is gathered there and the frames never cross the bus when sampling:
only index arrays and the batch's per-row scalars go host -> device, and each added row once.
What the bookkeeping reads stays on the host (rewards, ends, links, and each stream's last
``next_obs`` for linking), so ``add`` and ``sample`` never wait for the device and draw and link
exactly as with host storage.

Why not a library buffer: gymnasium has none, and torch's data utilities are built for
datasets, not for a ring that is written one transition at a time and sampled in batches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

Storage = np.ndarray | torch.Tensor
"""One stored array: numpy in host memory, or a torch tensor on the replay's device."""
ObsArrays = Storage | dict[str, Storage]
"""One array of observations, or one array per named part (axis 0 is the batch in either case)."""
Index = np.ndarray | slice | int


# --- storage: numpy arrays, or torch tensors on a device (the same calls for both) -----------
def check_fits(nbytes: int, device: torch.device | None) -> None:
    """Refuse, before allocating, replay storage of ``nbytes`` that a CUDA device has no free memory for."""
    if device is None or device.type != "cuda":
        return  # host memory, or a CPU "device": nothing to check
    free, total = torch.cuda.mem_get_info(device)
    if nbytes > free:
        raise ValueError(
            f"replay_on_device: the replay's storage needs {nbytes / 2**30:.2f} GiB on {device}, which has "
            f"{free / 2**30:.2f} GiB free of {total / 2**30:.2f} GiB; use replay_on_device=False (host memory) "
            f"or a smaller buffer_size"
        )


def allocate(shape: tuple[int, ...], dtype: np.dtype | type, device: torch.device | None) -> Storage:
    """A zeroed array: numpy when ``device`` is None, else a tensor of the same dtype on ``device``."""
    dtype = np.dtype(dtype)
    if device is None:
        return np.zeros(shape, dtype=dtype)
    try:
        torch_dtype = torch.from_numpy(np.zeros(0, dtype)).dtype
    except TypeError:
        raise TypeError(f"replay_on_device cannot store dtype {dtype} in a torch tensor; "
                        f"use replay_on_device=False") from None
    return torch.zeros(shape, dtype=torch_dtype, device=device)


def device_index(idx: Index, store: Storage) -> Index | torch.Tensor:
    """``idx`` as ``store`` takes it: an index array goes to a tensor's device (a small copy, no sync)."""
    if isinstance(store, torch.Tensor) and isinstance(idx, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64)).to(store.device, non_blocking=True)
    return idx


def take(store: Storage, idx: Index | torch.Tensor) -> Storage:
    """``store[idx]``; a tensor gathers on its device, with ``index_select`` (on the CPU about 17x faster
    than indexing with a tensor for a batch of 84x84 frames)."""
    idx = device_index(idx, store)
    if isinstance(idx, torch.Tensor):
        return store.index_select(0, idx.reshape(-1)).reshape(*idx.shape, *store.shape[1:])
    return store[idx]


def to_device(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array as a tensor on ``device`` (on the CPU: no copy)."""
    return torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True)


def put(store: Storage, idx: Index, values: np.ndarray) -> None:
    """``store[idx] = values``; into a tensor, the host values go to its device once."""
    if not isinstance(store, torch.Tensor):
        store[idx] = values
        return
    values = to_device(np.asarray(values), store.device).to(store.dtype)
    idx = device_index(idx, store)
    if isinstance(idx, torch.Tensor) and idx.dim() == 1:
        store.index_copy_(0, idx, values.expand(len(idx), *store.shape[1:]))
    else:
        store[idx] = values


def to_host(x: Storage) -> np.ndarray:
    """The array in host memory (a tensor is copied off its device; checkpoints stay numpy)."""
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else x


# --- observations that are one array or a dict of named arrays --------------------------
def allocate_obs(capacity: int, shape: tuple[int, ...] | Mapping[str, tuple[int, ...]],
                 dtype: np.dtype | type | Mapping[str, np.dtype | type],
                 device: torch.device | None = None) -> ObsArrays:
    """Zeroed storage for ``capacity`` observations: one array, or one per part of a mapping."""
    if isinstance(shape, Mapping):
        if not isinstance(dtype, Mapping) or set(dtype) != set(shape):
            raise ValueError(f"obs_dtype must map the same part names as obs_shape {sorted(shape)}, got {dtype!r}")
        return {k: allocate((capacity, *tuple(shape[k])), dtype[k], device) for k in shape}
    return allocate((capacity, *tuple(shape)), dtype, device)


def obs_nbytes(capacity: int, shape: tuple[int, ...] | Mapping[str, tuple[int, ...]],
               dtype: np.dtype | type | Mapping[str, np.dtype | type]) -> int:
    """Bytes that ``allocate_obs`` would take for ``capacity`` observations."""
    if isinstance(shape, Mapping):
        return sum(obs_nbytes(capacity, shape[k], dtype[k]) for k in shape)
    return capacity * math.prod(shape) * np.dtype(dtype).itemsize


def cast_obs(values: ObsArrays, dtype: np.dtype | Mapping[str, np.dtype]) -> ObsArrays:
    """Host observations in the storage's dtype (no copy when they have it), so that comparing them
    with stored ones compares what is stored."""
    if isinstance(dtype, Mapping):
        return {k: np.asarray(values[k], dtype=dtype[k]) for k in dtype}
    return np.asarray(values, dtype=dtype)


def take_obs(obs: ObsArrays, idx: Index) -> ObsArrays:
    """Rows ``idx`` of every part (of tensors: gathered on their device)."""
    if isinstance(obs, dict):
        if obs:
            idx = device_index(idx, next(iter(obs.values())))  # one copy of the index for all the parts
        return {k: take(v, idx) for k, v in obs.items()}
    return take(obs, idx)


def put_obs(store: ObsArrays, idx: Index, values: ObsArrays) -> None:
    """Write ``values`` into rows ``idx`` of every part."""
    if isinstance(store, dict):
        for k, v in store.items():
            put(v, idx, values[k])
    else:
        put(store, idx, values)


def concat_obs(a: ObsArrays, b: ObsArrays) -> ObsArrays:
    """Host observations ``a`` then ``b`` along axis 0, part by part."""
    return {k: np.concatenate([a[k], b[k]]) for k in a} if isinstance(a, dict) else np.concatenate([a, b])


def rows_equal(a: ObsArrays, b: ObsArrays) -> np.ndarray:
    """``(n,)`` bool: whether row i of ``a`` equals row i of ``b`` in every part, exactly."""
    if isinstance(a, dict):
        return np.logical_and.reduce([rows_equal(a[k], b[k]) for k in a], axis=0)
    return (a == b).all(axis=tuple(range(1, a.ndim)))


def row_equal(a: ObsArrays, i: int, b: ObsArrays, j: int) -> bool:
    """Whether row ``i`` of ``a`` equals row ``j`` of ``b`` in every part (one row: no batch arrays)."""
    if isinstance(a, dict):
        return all(bool((a[k][i] == b[k][j]).all()) for k in a)
    return bool((a[i] == b[j]).all())


def obs_state(prefix: str, obs: ObsArrays) -> dict[str, Storage]:
    """Checkpoint arrays: ``{prefix: array}``, or ``{prefix.name: array}`` per part."""
    return {f"{prefix}.{k}": v for k, v in obs.items()} if isinstance(obs, dict) else {prefix: obs}


class Batch(NamedTuple):
    """A sampled mini-batch, as numpy arrays with a leading batch axis ``B`` (all torch tensors on
    the replay's device when its storage is there: ``on_device``)."""

    obs: ObsArrays  # (B, *obs_shape), the observation space's dtype (a dict of such arrays for several parts)
    actions: np.ndarray  # (B, D) int64, zero-based action indices per action dimension
    rewards: np.ndarray  # (B,) float32
    next_obs: ObsArrays  # (B, *obs_shape), the observation to bootstrap from
    terminated: np.ndarray  # (B,) float32, 1.0 where the episode really ended (at the bootstrap step)
    discounts: np.ndarray | None = None  # (B,) float32 gamma**m for an m-step return; None: one step
    # soft n-step returns (sample(..., intermediate=True)): the states s_{t+1} .. s_{t+n-1} and gamma**k for
    # each, 0 where the return ended before reaching it
    mid_obs: ObsArrays | None = None  # (B, n - 1, *obs_shape), with the masks of those states
    mid_discounts: np.ndarray | None = None  # (B, n - 1) float32


def on_device(batch: Batch, device: torch.device | None) -> Batch:
    """The batch with its host arrays (the per-row scalars) moved to ``device``; None: unchanged."""
    if device is None:
        return batch
    return Batch(*(x if x is None or isinstance(x, (dict, torch.Tensor)) else to_device(x, device) for x in batch))


def n_step_chain(succ: np.ndarray, first: np.ndarray, n_step: int) -> tuple[np.ndarray, np.ndarray]:
    """The logical rows of each n-step return that starts at ``first``: ``(B, n_step)`` (entries past
    its end repeat its last row) and the number ``m`` of rows it has (``(B,)``, 1 to ``n_step``).

    ``succ`` is the ring's per-slot array of successor links (slot = logical % len): ``m`` is
    ``n_step`` unless the episode ended (terminated or truncated) or the stream's next step was
    not stored yet. A link is only ever to a newer row of the same stream, so a valid first row
    has valid successors.
    """
    capacity = len(succ)
    chain = np.empty((len(first), n_step), np.int64)
    chain[:, 0] = first
    steps = np.ones(len(first), np.int64)
    for k in range(1, n_step):  # a loop over the horizon, vectorised over the batch
        nxt = succ[chain[:, k - 1] % capacity]
        go = nxt >= 0
        chain[:, k] = np.where(go, nxt, chain[:, k - 1])
        steps += go
    return chain, steps


def n_step_returns(
    succ: np.ndarray, rewards: np.ndarray, first: np.ndarray, n_step: int, gamma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Follow successor links from the logical rows ``first`` for up to ``n_step - 1`` steps.

    ``succ`` and ``rewards`` are the ring's per-slot arrays (slot = logical % len). Returns
    the logical index of the last row reached (``(B,)``), the discounted reward sum
    ``sum_{k<m} gamma^k r_{t+k}`` (float32) and ``gamma^m`` (float32), where ``m`` is the number of
    rows followed: ``n_step`` unless the episode ended (terminated or truncated) or the stream's
    next step was not stored yet. A link is only ever to a newer row of the same stream, so a
    valid first row has valid successors.
    """
    chain, steps = n_step_chain(succ, np.asarray(first, dtype=np.int64), n_step)
    k = np.arange(n_step)
    ret = np.where(k < steps[:, None], gamma**k * rewards[chain % len(succ)].astype(np.float64), 0.0).sum(axis=1)
    return chain[:, -1], ret.astype(np.float32), (gamma ** steps.astype(np.float64)).astype(np.float32)


def mid_discounts(steps: np.ndarray, n_step: int, gamma: float) -> np.ndarray:
    """``(B, n_step - 1)``: ``gamma**k`` for the intermediate states ``s_{t+k}`` (k = 1 .. n-1) a return
    of ``steps`` rows passes through, 0 for those it does not reach."""
    k = np.arange(1, n_step)
    return np.where(k < steps[:, None], gamma**k, 0.0).astype(np.float32)


def check_links(links: np.ndarray, own: np.ndarray, added: int, name: str) -> None:
    """Validate loaded successor links: each is -1 or a logical index in ``(own, added)``."""
    links = np.asarray(links)
    if links.dtype.kind not in "iu":
        raise ValueError(f"replay state '{name}' has dtype {links.dtype}, expected integers")
    bad = (links != -1) & ((links <= own) | (links >= added))
    if bad.any():
        raise ValueError(f"replay state '{name}' holds links outside the stored transitions")


class StreamTails:
    """Per stream (vector sub-env id), the logical index of its last stored row that did not end an episode,
    and, given ``obs_shape``/``obs_dtype``, a host copy of that row's ``next_obs``.

    Dense arrays indexed by stream id (sub-env ids are small non-negative integers), so that
    looking streams up and updating them are single fancy-indexing operations in ``add``. The
    ``next_obs`` copies serve a replay whose storage is on a device: deciding a link compares them
    with the new row's ``obs`` without reading that storage. A host replay reads its own arrays
    (``next_obs`` stays None: no copies to make on every ``add``).
    """

    def __init__(self, obs_shape: tuple[int, ...] | Mapping[str, tuple[int, ...]] | None = None,
                 obs_dtype: np.dtype | Mapping[str, np.dtype] | None = None) -> None:
        self.obs_shape, self.obs_dtype = obs_shape, obs_dtype
        self.rows = np.zeros(0, np.int64)  # -1: no open row
        self.next_obs: ObsArrays | None = None if obs_shape is None else allocate_obs(0, obs_shape, obs_dtype)

    def grow(self, top: int) -> np.ndarray:
        """Make room for stream ids below ``top``; returns the table."""
        if top > len(self.rows):
            more = top - len(self.rows)
            self.rows = np.concatenate([self.rows, np.full(more, -1, np.int64)])
            if self.next_obs is not None:
                self.next_obs = concat_obs(self.next_obs, allocate_obs(more, self.obs_shape, self.obs_dtype))
        return self.rows

    def lookup(self, env_ids: np.ndarray) -> np.ndarray:
        """The remembered row of each stream in ``env_ids``, -1 where none (grows the table as needed)."""
        return self.grow(int(env_ids.max()) + 1)[env_ids]

    def update(self, env_ids: np.ndarray, rows: np.ndarray, done: np.ndarray, next_obs: ObsArrays) -> None:
        """Remember ``rows`` (logical, one per stream, streams already looked up) and their ``next_obs``,
        or forget where ``done``."""
        self.rows[env_ids] = np.where(done, -1, rows)
        if self.next_obs is not None:
            put_obs(self.next_obs, env_ids, next_obs)

    def state_dict(self) -> dict[str, np.ndarray]:
        ids = np.flatnonzero(self.rows >= 0)
        return {"stream_ids": ids.astype(np.int64), "stream_rows": self.rows[ids]}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore the rows; the caller fills in their ``next_obs`` (``next_obs[ids]``) from its saved rows."""
        ids = np.asarray(state["stream_ids"], np.int64).reshape(-1)
        rows = np.asarray(state["stream_rows"], np.int64).reshape(-1)
        if ids.shape != rows.shape or (np.diff(ids) <= 0).any() or (ids < 0).any():
            raise ValueError("replay state 'stream_ids'/'stream_rows' must be equally long, with sorted unique ids >= 0")
        self.rows = np.zeros(0, np.int64)
        if self.next_obs is not None:
            self.next_obs = allocate_obs(0, self.obs_shape, self.obs_dtype)
        self.grow(int(ids.max()) + 1 if len(ids) else 0)
        self.rows[ids] = rows


@runtime_checkable
class Replay(Protocol):
    """What the learner needs of a replay buffer; ``ReplayBuffer`` and ``FrameStackReplayBuffer`` both are one.

    ``state_dict`` returns plain numpy arrays (0-d for counters) that describe the buffer fully,
    and ``load_state_dict`` checks such arrays against the buffer's own layout (raising
    ``ValueError`` before it changes anything), so a checkpoint needs to know nothing about the
    buffer's kind. ``rng`` draws the samples; it is saved apart from the contents so that a
    checkpoint without the replay still resumes the sampler's stream.
    """

    rng: np.random.Generator
    optional_state: tuple[str, ...]
    """Names in ``state_dict()`` that a state saved by an earlier version may lack (``load_state_dict`` fills them in)."""

    def __len__(self) -> int: ...

    @property
    def nbytes(self) -> int: ...

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_ids: np.ndarray | None = None,
    ) -> None: ...

    def sample(self, batch_size: int, n_step: int = 1, gamma: float = 0.99, intermediate: bool = False) -> Batch: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None: ...


class ReplayBuffer:
    """Ring buffer with uniform sampling.

    ``add`` takes a batch of transitions (axis 0 is the batch, e.g. one row per vector-env
    sub-environment); the oldest transitions are overwritten once ``capacity`` is reached.
    ``device``: keep ``obs`` and ``next_obs`` in tensors there and sample batches of tensors
    there (see the module docstring); None keeps everything in numpy arrays.

    >>> import numpy as np
    >>> rb = ReplayBuffer(capacity=4, obs_shape=(2,), obs_dtype=np.float32, action_dims=1, seed=0)
    >>> o = np.zeros((3, 2), np.float32)
    >>> rb.add(o, np.zeros((3, 1)), np.ones(3), o, np.zeros(3, bool), np.zeros(3, bool))
    >>> len(rb), rb.sample(2).obs.shape
    (3, (2, 2))
    """

    # Arrays that came with n-step links: a state saved before them loads with none (one-step returns).
    optional_state = ("succ", "added", "stream_ids", "stream_rows")

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...] | Mapping[str, tuple[int, ...]],
        obs_dtype: np.dtype | type | Mapping[str, np.dtype | type],
        action_dims: int = 1,
        seed: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity}")
        self.capacity = int(capacity)
        if isinstance(obs_shape, Mapping):  # named parts, each in its own array and dtype
            self.obs_shape = {k: tuple(v) for k, v in obs_shape.items()}
            self.obs_dtype = {k: np.dtype(obs_dtype[k]) for k in obs_shape} if isinstance(obs_dtype, Mapping) else obs_dtype
        else:
            self.obs_shape, self.obs_dtype = tuple(obs_shape), np.dtype(obs_dtype)
        self.device = None if device is None else torch.device(device)
        tails = StreamTails(*((self.obs_shape, self.obs_dtype) if self.device is not None else ()))
        check_fits(2 * obs_nbytes(self.capacity, self.obs_shape, self.obs_dtype), self.device)
        self.obs = allocate_obs(self.capacity, self.obs_shape, self.obs_dtype, self.device)
        self.next_obs = allocate_obs(self.capacity, self.obs_shape, self.obs_dtype, self.device)
        self.actions = np.zeros((self.capacity, action_dims), dtype=np.int64)
        self.rewards = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=np.float32)
        self.truncated = np.zeros(self.capacity, dtype=np.float32)
        self.succ = np.full(self.capacity, -1, dtype=np.int64)  # logical index of the stream's next row
        self.pos = 0  # next slot to write
        self.size = 0  # number of valid transitions
        self.added = 0  # transitions ever written: the next logical index (slot = logical % capacity)
        self.tails = tails
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated arrays (the buffer's full-capacity footprint)."""
        arrays = (*obs_state("obs", self.obs).values(), *obs_state("next_obs", self.next_obs).values(),
                  self.actions, self.rewards, self.terminated, self.truncated, self.succ)
        return sum(a.nbytes for a in arrays)

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
        """Store ``n`` transitions (axis 0 of every argument).

        ``env_ids`` names the stream of each row (None: all rows are stream 0); rows of one
        stream are consecutive steps of it, in order. It only decides the n-step links.
        """
        n = len(rewards)
        if n == 0:
            return
        env_ids = np.zeros(n, np.int64) if env_ids is None else np.asarray(env_ids, dtype=np.int64).reshape(n)
        obs, next_obs = cast_obs(obs, self.obs_dtype), cast_obs(next_obs, self.obs_dtype)
        if n > self.capacity:  # only the newest `capacity` rows could survive anyway
            keep = slice(n - self.capacity, n)
            obs, actions, rewards, next_obs = take_obs(obs, keep), actions[keep], rewards[keep], take_obs(next_obs, keep)
            terminated, truncated, env_ids = terminated[keep], truncated[keep], env_ids[keep]
            self.added += n - self.capacity  # the dropped rows count as written and overwritten
            n = self.capacity
        logical = self.added + np.arange(n)
        start = self.added % self.capacity
        # a basic slice where the rows do not wrap around (most calls): much cheaper than fancy indexing
        idx = slice(start, start + n) if start + n <= self.capacity else logical % self.capacity
        put_obs(self.obs, idx, obs)
        put_obs(self.next_obs, idx, next_obs)
        self.actions[idx] = np.reshape(actions, (n, -1))
        self.rewards[idx] = rewards
        self.terminated[idx] = terminated
        self.truncated[idx] = truncated
        self.succ[idx] = -1
        self.added += n
        self.pos = int(self.added % self.capacity)
        self.size = min(self.size + n, self.capacity)
        self._link(logical, env_ids, obs, next_obs)

    def _link(self, logical: np.ndarray, env_ids: np.ndarray, obs: ObsArrays, next_obs: ObsArrays) -> None:
        """Point each stream's previous row at its new row where the new ``obs`` continues it.

        The previous row of a stream is the one remembered from an earlier ``add``, or, when a
        stream has several rows in this call, its row just before (found by a stable sort, done
        only then: one row per sub-env is the common case). ``obs``/``next_obs`` are this call's
        (host) rows; the previous rows' ``next_obs`` come from them or from ``tails``, never from the storage.
        """
        if len(env_ids) == 1:  # one env's step: the same decisions on Python scalars (numpy's per-call cost dominates)
            self._link_one(int(logical[0]), int(env_ids[0]), obs, next_obs)
            return
        if (env_ids < 0).any():
            raise ValueError(f"env_ids must be non-negative stream ids, got {env_ids}")
        prev = self.tails.lookup(env_ids)
        prev = np.where(prev >= self.added - self.size, prev, -1)  # a row overwritten since is no predecessor
        in_call = np.full(len(env_ids), -1)  # the position in this call of a row's predecessor, -1: from tails
        last = slice(None)  # the rows that end their stream's part of this call
        if len(env_ids) > 1 and np.bincount(env_ids).max() > 1:
            order = np.argsort(env_ids, kind="stable")
            e = env_ids[order]
            inner = np.flatnonzero(e[1:] == e[:-1]) + 1  # sorted positions with an earlier row of their stream
            prev[order[inner]] = logical[order[inner - 1]]
            in_call[order[inner]] = order[inner - 1]
            ends = np.ones(len(e), bool)
            ends[:-1] = e[1:] != e[:-1]
            last = order[ends]
        has = np.flatnonzero(prev >= 0)
        if len(has):
            p = prev[has] % self.capacity
            keep = (self.terminated[p] == 0) & (self.truncated[p] == 0)
            keep &= rows_equal(self._predecessors_next_obs(p, env_ids[has], in_call[has], next_obs), take_obs(obs, has))
            self.succ[p[keep]] = logical[has[keep]]
        slots = logical[last] % self.capacity
        self.tails.update(env_ids[last], logical[last], (self.terminated[slots] != 0) | (self.truncated[slots] != 0),
                          take_obs(next_obs, last))

    def _predecessors_next_obs(self, slots: np.ndarray, env_ids: np.ndarray, in_call: np.ndarray,
                               next_obs: ObsArrays) -> ObsArrays:
        """The ``next_obs`` of the predecessor rows in ``slots``: read from host storage; with device
        storage (never read back), this call's rows (``in_call`` >= 0) or the copies ``tails`` keeps."""
        if self.tails.next_obs is None:
            return take_obs(self.next_obs, slots)
        kept = take_obs(self.tails.next_obs, env_ids)
        mine = np.flatnonzero(in_call >= 0)
        put_obs(kept, mine, take_obs(next_obs, in_call[mine]))
        return kept

    def _link_one(self, row: int, env_id: int, obs: ObsArrays, next_obs: ObsArrays) -> None:
        """``_link`` for a single new row."""
        if env_id < 0:
            raise ValueError(f"env_ids must be non-negative stream ids, got {env_id}")
        tails, kept = self.tails.grow(env_id + 1), self.tails.next_obs
        prev, slot = int(tails[env_id]), row % self.capacity
        if prev >= 0 and prev >= self.added - self.size:
            p = prev % self.capacity
            if not self.terminated[p] and not self.truncated[p] and (
                row_equal(self.next_obs, p, obs, 0) if kept is None else row_equal(kept, env_id, obs, 0)
            ):
                self.succ[p] = row
        if self.terminated[slot] or self.truncated[slot]:
            tails[env_id] = -1
        else:
            tails[env_id] = row
            if kept is not None:
                put_obs(kept, env_id, take_obs(next_obs, 0))

    def sample(self, batch_size: int, n_step: int = 1, gamma: float = 0.99, intermediate: bool = False) -> Batch:
        """Sample ``batch_size`` transitions uniformly, with replacement.

        With ``n_step > 1`` each sampled row starts an n-step return (see ``n_step_chain``):
        ``rewards`` is the discounted sum, ``next_obs``/``terminated`` belong to the last step
        reached and ``discounts`` holds ``gamma**m``; ``intermediate`` adds the states passed on
        the way (``mid_obs``, ``mid_discounts``).
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer; call add() first")
        idx = self.rng.integers(0, self.size, size=batch_size)
        if n_step == 1:
            return on_device(Batch(
                obs=take_obs(self.obs, idx),
                actions=self.actions[idx],
                rewards=self.rewards[idx],
                next_obs=take_obs(self.next_obs, idx),
                terminated=self.terminated[idx],
            ), self.device)
        first = self.added - 1 - (self.added - 1 - idx) % self.capacity  # the logical index held in each slot
        last, returns, discounts = n_step_returns(self.succ, self.rewards, first, n_step, gamma)
        end = last % self.capacity
        mid = {}
        if intermediate:
            chain, steps = n_step_chain(self.succ, first, n_step)
            mid = {"mid_obs": take_obs(self.next_obs, chain[:, :-1] % self.capacity),
                   "mid_discounts": mid_discounts(steps, n_step, gamma)}
        return on_device(Batch(
            obs=take_obs(self.obs, idx),
            actions=self.actions[idx],
            rewards=returns,
            next_obs=take_obs(self.next_obs, end),  # a mask stored with it is the bootstrap state's
            terminated=self.terminated[end],
            discounts=discounts,
            **mid,
        ), self.device)

    # --- checkpointing: plain arrays and ints, no pickle -------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that fully describe the buffer (only the filled part of the ring)."""
        n = self.size
        return {
            **{k: to_host(v) for k, v in obs_state("obs", take_obs(self.obs, slice(0, n))).items()},
            **{k: to_host(v) for k, v in obs_state("next_obs", take_obs(self.next_obs, slice(0, n))).items()},
            "actions": self.actions[:n],
            "rewards": self.rewards[:n],
            "terminated": self.terminated[:n],
            "truncated": self.truncated[:n],
            "pos": np.array(self.pos, dtype=np.int64),
            "succ": self.succ[:n],
            "added": np.array(self.added, dtype=np.int64),
            **self.tails.state_dict(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a ``state_dict``; everything is checked before anything is written."""
        stores = {**obs_state("obs", self.obs), **obs_state("next_obs", self.next_obs), "actions": self.actions,
                  "rewards": self.rewards, "terminated": self.terminated, "truncated": self.truncated}
        names = tuple(stores)
        missing = [name for name in names if name not in state]
        if missing:
            raise ValueError(f"replay state lacks arrays {missing}")
        n = len(state["rewards"])
        pos = int(state["pos"])
        if not 0 <= pos < self.capacity:
            raise ValueError(f"replay position {pos} is outside the buffer of capacity {self.capacity}")
        lengths = {name: len(state[name]) for name in names}
        if len(set(lengths.values())) != 1 or (n < self.capacity and pos != n):
            raise ValueError(f"replay arrays are inconsistent: lengths {lengths}, position {pos}, capacity {self.capacity}")
        if n > self.capacity:
            raise ValueError(f"replay state holds {n} transitions but capacity is {self.capacity}")
        for name in names:
            expected = stores[name].shape[1:]
            if state[name].shape[1:] != expected:
                raise ValueError(f"replay state '{name}' has per-item shape {state[name].shape[1:]}, expected {expected}")
        # n-step links; a state saved before they existed loads with none (one-step returns)
        added = int(state["added"]) if "added" in state else (pos if n < self.capacity else pos + n)
        if added % self.capacity != pos or added < n:
            raise ValueError(f"replay state 'added' ({added}) does not match its position {pos} and size {n}")
        succ, tails = np.full(n, -1, np.int64), StreamTails(self.tails.obs_shape, self.tails.obs_dtype)
        if "succ" in state:
            succ = np.asarray(state["succ"])
            if succ.shape != (n,):
                raise ValueError(f"replay state 'succ' has shape {succ.shape}, expected ({n},)")
            check_links(succ, added - 1 - (added - 1 - np.arange(n)) % self.capacity, added, "succ")
            tails.load_state_dict(state)
            check_links(tails.rows, np.full(len(tails.rows), -1), added, "stream_rows")
            if ((tails.rows >= 0) & (tails.rows < added - n)).any():
                raise ValueError("replay state 'stream_rows' names rows that are no longer stored")
        if tails.next_obs is not None:  # the streams' last next_obs, from the saved rows
            ids = np.flatnonzero(tails.rows >= 0)
            saved_next = cast_obs({k: state[f"next_obs.{k}"] for k in self.obs_shape} if isinstance(self.next_obs, dict)
                                  else state["next_obs"], self.obs_dtype)
            put_obs(tails.next_obs, ids, take_obs(saved_next, tails.rows[ids] % self.capacity))
        for name in names:
            put(stores[name], slice(0, n), state[name])
        self.succ[:] = -1
        self.succ[:n] = succ
        self.size, self.pos, self.added, self.tails = n, pos, added, tails
