"""Distributed SQN on Ray: env actors on any number of hosts feed one learner that holds the replay.

The shape of Ape-X (Horgan et al. 2018) and Acme's distributed agents, on Ray's actors and
object store:

* ``EnvWorker`` (a Ray actor, one per actor index): a vector env, an act-only ``Actor`` built from
  the learner's weights and a ``TransitionIntake`` that writes into a ``ChunkEncoder``. Each
  ``collect`` call plays ``steps_per_chunk`` vector steps and returns a ``ChunkReport``: the chunk
  (frame stacks as single new frames, see ``transport.py``), the weight version that acted, the
  episodes that finished.
* ``DistributedSQN`` (in the driver, with the ``SQNAgent`` whose learner trains): keeps at most
  ``chunks_in_flight`` collect calls pending per actor (so the object store never fills), decodes
  arriving chunks into the learner's replay, trains, and every ``weight_sync_every`` gradient steps
  puts the policy weights into the object store once (only the latest reference is kept; actors
  fetch it when the version they are handed is newer than theirs).

Modes. ``sync``: after each chunk the learner runs every update its schedule has due, so the
replay ratio is exactly the single-process ``gradient_steps / train_freq`` per stored transition.
``async``: the learner trains continuously (one update whenever no chunk is waiting, once
``max(learning_starts, batch_size)`` transitions are stored) and ``stats()`` reports the ratio it reached.

Faults. An actor that dies (its process, its node) is replaced by the driver with the same index and
``restart_count + 1``, up to ``max_restarts`` times per index. Its seed comes from
``(seed, actor index, restart count)``, and each incarnation gets replay stream ids of its own (the next
``num_envs`` unused ones, ``stream_bases[(actor, restart)]``; never reused, also across a resume), so no
frame or n-step link ever joins rows across a restart; its chunks in flight are lost whole (a chunk is
one object), never half-stored.

Ray is imported only when a ``DistributedSQN`` starts: ``pip install "sqn-agents[distributed]"``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from sqn_agents.actor import Actor, TransitionIntake
from sqn_agents.agent import SQNAgent
from sqn_agents.layout import observation_layout
from sqn_agents.metrics import LearnMetrics
from sqn_agents.networks import NetworkFactory
from sqn_agents.transport import Chunk, ChunkDecoder, ChunkEncoder

Mode = Literal["sync", "async"]
MODES = ("sync", "async")


# ---------------------------------------------------------------------- pure helpers
def actor_seed(run_seed: int, actor_index: int, restart_count: int) -> int:
    """The seed of one actor incarnation: distinct for every (run seed, actor index, restart count)."""
    return int(np.random.SeedSequence([run_seed, actor_index, restart_count]).generate_state(1, np.uint32)[0])


# Replay streams of env actors start here: a single-process run resumed as a distributed one has used
# its sub-env ids 0, 1, ... as streams, and the uniform replay keeps a dense table up to the largest id.
FIRST_STREAM = 1024


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError('distributed training needs Ray: pip install "sqn-agents[distributed]"') from None
    return ray


# ---------------------------------------------------------------------- the env actor
@dataclass(frozen=True)
class WeightsRef:
    """A weight version and where to get it: an ObjectRef (wrapped, so Ray does not resolve it for every
    call) or the weights themselves (numpy arrays, as ``policy_weights_numpy`` returns)."""

    version: int
    weights: Any


@dataclass(frozen=True)
class WorkerSpec:
    """What every env actor is built from (the same for all indices and restarts)."""

    env_fn: Callable[[], gym.Env]
    num_envs: int = 1
    steps_per_chunk: int = 32
    hidden_sizes: tuple[int, ...] = (256, 256)
    network_factory: NetworkFactory | None = None
    run_seed: int = 0
    score_key: str = "episode"
    """The info key of finished episodes' returns: gymnasium's RecordEpisodeStatistics ('episode') or the
    unclipped Atari game score of ``wrappers.make_atari_env`` ('game')."""


@dataclass(frozen=True)
class ChunkReport:
    """What one ``collect`` call returns to the learner."""

    actor_index: int
    restart_count: int
    weight_version: int
    chunk: Chunk
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    vector_steps: int
    node_id: str
    collect_seconds: float


def policy_weights_numpy(agent: SQNAgent) -> dict[str, np.ndarray]:
    """The learner's ``policy_weights()`` as numpy arrays, which Ray's object store shares without copies."""
    return {k: v.numpy() for k, v in agent.learner.policy_weights().items()}


class EnvWorker:
    """One env actor incarnation: plays a vector env with an act-only policy and packs chunks.

    A plain class: the driver runs it as a Ray actor (``ray.remote(EnvWorker)``); tests may run it in process.
    """

    def __init__(self, spec: WorkerSpec, actor_index: int, restart_count: int, weights: WeightsRef) -> None:
        torch.set_num_threads(1)
        self.spec, self.actor_index, self.restart_count = spec, actor_index, restart_count
        seed = actor_seed(spec.run_seed, actor_index, restart_count)
        envs = gym.vector.SyncVectorEnv([spec.env_fn for _ in range(spec.num_envs)])
        self.envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
        space, act_space = envs.single_observation_space, envs.single_action_space
        self.encoder = ChunkEncoder(space.shape, space.dtype, observation_layout(space.shape, space.dtype).frame_stack)
        self.intake = TransitionIntake(space, act_space, self.encoder, envs.metadata["autoreset_mode"])
        self.version = weights.version
        self.actor = Actor.from_weights(space, act_space, self._fetch(weights), hidden_sizes=spec.hidden_sizes,
                                        network_factory=spec.network_factory, device="cpu", seed=seed)
        self.obs, _ = self.envs.reset(seed=seed)

    @staticmethod
    def _fetch(weights: WeightsRef) -> dict[str, torch.Tensor]:
        arrays = weights.weights
        if not isinstance(arrays, Mapping):  # an ObjectRef
            arrays = _import_ray().get(arrays)
        return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}  # the store's arrays are read-only

    def collect(self, weights: WeightsRef) -> ChunkReport:
        """Play ``steps_per_chunk`` vector steps with the newest weights handed over; the chunk they made."""
        t0 = time.perf_counter()
        if weights.version != self.version:
            self.actor.load_weights(self._fetch(weights))
            self.version = weights.version
        returns, lengths, key = [], [], self.spec.score_key
        for _ in range(self.spec.steps_per_chunk):
            actions = self.actor.act(self.obs)
            next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
            self.intake.observe(self.obs, actions, rewards, next_obs, terminated, truncated, info=infos)
            self.obs = next_obs
            if f"_{key}" in infos:
                done = np.flatnonzero(infos[f"_{key}"])
                returns.append(np.asarray(infos[key]["r"], np.float64)[done])
                lengths.append(np.asarray(infos[key]["l"], np.int64)[done])
        return ChunkReport(
            self.actor_index, self.restart_count, self.version, self.encoder.flush(),
            np.concatenate(returns) if returns else np.empty(0), np.concatenate(lengths) if lengths else np.empty(0, np.int64),
            self.spec.steps_per_chunk, self.node_id(), time.perf_counter() - t0,
        )

    @staticmethod
    def node_id() -> str:
        """The Ray node this worker runs on ('' outside Ray)."""
        try:
            import ray
        except ImportError:
            return ""
        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""

    def close(self) -> None:
        self.envs.close()


# ---------------------------------------------------------------------- the learner's side
@dataclass
class DistributedStats:
    """What the driver measures; ``summary()`` turns it into the figures a run reports."""

    chunks: int = 0
    transitions: int = 0
    bytes_received: int = 0
    restarts: int = 0
    wait_seconds: float = 0.0
    learn_seconds: float = 0.0
    ingest_seconds: float = 0.0
    staleness: list[int] = field(default_factory=list)  # gradient steps between a chunk's weights and its arrival
    gradient_steps: int = 0
    nodes: set[str] = field(default_factory=set)
    weight_versions: set[int] = field(default_factory=set)
    started: float = field(default_factory=time.perf_counter)

    def summary(self) -> dict[str, float]:
        wall = max(time.perf_counter() - self.started, 1e-9)
        stale = np.asarray(self.staleness or [0])
        return {
            "chunks": self.chunks,
            "transitions": self.transitions,
            "env_steps_per_second": round(self.transitions / wall, 1),
            "gradient_steps": self.gradient_steps,
            "gradient_steps_per_second": round(self.gradient_steps / wall, 1),
            "replay_ratio": round(self.gradient_steps / max(self.transitions, 1), 4),
            "wait_share": round(self.wait_seconds / wall, 3),
            "learn_share": round(self.learn_seconds / wall, 3),
            "staleness_mean": round(float(stale.mean()), 1),
            "staleness_max": int(stale.max()),
            "bytes_per_transition": round(self.bytes_received / max(self.transitions, 1), 1),
            "restarts": self.restarts,
            "nodes": len(self.nodes),
        }


class DistributedSQN:
    """N env actors on Ray feeding ``agent``'s learner (in this process, on its device).

    ``env_fn`` builds one env (it must pickle: each actor calls it ``num_envs`` times); ``mode``,
    ``steps_per_chunk`` and ``weight_sync_every`` are sqn-train's flags of the same names;
    ``chunks_in_flight`` per actor defaults to 1 (sync) or 2 (async); ``max_restarts`` counts the
    restarts of each actor index in this run; ``restart_counts`` are the counts to start from and ``next_stream`` the first
    replay stream id to use (a resumed run passes its ``state_dict()``'s counts + 1 and ``next_stream``); ``score_key`` is the info key of episode returns ('game' for
    ``wrappers.make_atari_env``'s unclipped scores); ``spread`` asks Ray to spread actors over nodes.

    Usage (after ``ray.init()``)::

        agent = SQNAgent(env.observation_space, env.action_space, SQNConfig(), seed=0)
        run = DistributedSQN(agent, functools.partial(gym.make, "CartPole-v1"), num_actors=2)
        while agent.env_steps < 50_000:
            run.poll()
        run.close()
        print(run.stats.summary())
    """

    def __init__(
        self,
        agent: SQNAgent,
        env_fn: Callable[[], gym.Env],
        *,
        num_actors: int = 2,
        num_envs: int = 1,
        mode: Mode = "sync",
        steps_per_chunk: int = 32,
        weight_sync_every: int = 100,
        chunks_in_flight: int | None = None,
        max_restarts: int = 3,
        actor_cpus: float = 1.0,
        seed: int = 0,
        restart_counts: Sequence[int] | None = None,
        next_stream: int = FIRST_STREAM,
        score_key: str = "episode",
        spread: bool = True,
    ) -> None:
        for name, value, low in (("num_actors", num_actors, 1), ("num_envs", num_envs, 1),
                                 ("steps_per_chunk", steps_per_chunk, 1), ("weight_sync_every", weight_sync_every, 1),
                                 ("max_restarts", max_restarts, 0), ("next_stream", next_stream, 0)):
            if type(value) is not int:
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if isinstance(actor_cpus, bool) or not isinstance(actor_cpus, (int, float)):
            raise TypeError(f"actor_cpus must be a number, got {type(actor_cpus).__name__}")
        if not actor_cpus > 0:
            raise ValueError(f"actor_cpus must be > 0, got {actor_cpus}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        in_flight = chunks_in_flight if chunks_in_flight is not None else (1 if mode == "sync" else 2)
        if type(in_flight) is not int or in_flight < 1:
            raise ValueError(f"chunks_in_flight must be an int >= 1, got {in_flight!r}")
        counts = list(restart_counts) if restart_counts is not None else [0] * num_actors
        if len(counts) != num_actors or any(type(c) is not int or c < 0 for c in counts):
            raise ValueError(f"restart_counts must be {num_actors} ints >= 0, got {restart_counts!r}")
        if not isinstance(agent, SQNAgent):
            raise TypeError(f"agent must be an SQNAgent, got {type(agent).__name__}")
        if not agent.learner.obs_codec.flat:  # the chunk transport carries one array per step
            raise TypeError(f"the distributed mode takes agents with one Box observation and no action masks, got "
                            f"observation space {agent.observation_space} (action_mask={agent.action_mask})")
        self.ray = _import_ray()
        if not self.ray.is_initialized():
            raise RuntimeError("Ray is not running in this process: call ray.init() (or ray.init(address=...)) first")
        self.agent, self.mode, self.num_actors, self.num_envs = agent, mode, num_actors, num_envs
        self.chunks_in_flight, self.max_restarts, self.weight_sync_every = in_flight, max_restarts, weight_sync_every
        self.spec = WorkerSpec(env_fn, num_envs, steps_per_chunk, tuple(agent.config.hidden_sizes),
                               agent.network_factory, seed, score_key)
        self.restart_counts = counts
        self.first_restart_counts = list(counts)
        self.next_stream = next_stream  # the first replay stream id no incarnation has used
        self.stream_bases: dict[tuple[int, int], int] = {}  # (actor, restart) -> its first stream id
        self.stats = DistributedStats()
        self.last_metrics: LearnMetrics | None = None  # of the last gradient step, for logs
        space = agent.observation_space
        self._frame_stack = observation_layout(space.shape, space.dtype).frame_stack
        options: dict[str, Any] = {"num_cpus": actor_cpus, "max_restarts": 0}
        if spread:
            options["scheduling_strategy"] = "SPREAD"
        self._remote = self.ray.remote(EnvWorker).options(**options)
        self._publish()
        self.workers: list[Any] = [None] * num_actors
        self.decoders: list[ChunkDecoder] = [None] * num_actors  # type: ignore[list-item]
        self.pending: list[deque] = [deque() for _ in range(num_actors)]
        for i in range(num_actors):
            self._start(i)

    # --- actors --------------------------------------------------------------------------
    def _publish(self) -> None:
        """One ray.put of the current policy weights; the previous reference is dropped (and freed)."""
        version = self.agent.gradient_steps
        self.weights = WeightsRef(version, self.ray.put(policy_weights_numpy(self.agent)))
        self.stats.weight_versions.add(version)

    def _start(self, i: int) -> None:
        self.stream_bases[(i, self.restart_counts[i])] = self.next_stream
        self.next_stream += self.num_envs
        self.workers[i] = self._remote.remote(self.spec, i, self.restart_counts[i], self.weights)
        self.decoders[i] = ChunkDecoder(self.agent.observation_space.shape, self.agent.observation_space.dtype,
                                        self._frame_stack)
        self.pending[i] = deque(self.workers[i].collect.remote(self.weights) for _ in range(self.chunks_in_flight))

    def _restart(self, i: int, error: Exception) -> None:
        if self.restart_counts[i] - self.first_restart_counts[i] >= self.max_restarts:
            raise RuntimeError(f"env actor {i} died more than max_restarts={self.max_restarts} times; last: {error}") from error
        self.ray.kill(self.workers[i], no_restart=True)  # it may be merely unreachable: make sure it is gone
        self.restart_counts[i] += 1
        self.stats.restarts += 1
        self._start(i)

    def kill_actor(self, i: int) -> None:
        """Kill env actor ``i``'s process (to test or demonstrate recovery): the next ``poll`` restarts it."""
        self.ray.kill(self.workers[i], no_restart=True)

    # --- one round -------------------------------------------------------------------------
    def poll(self) -> list[ChunkReport]:
        """Receive the chunks that are ready (waiting for one if the learner has nothing else to do), store
        them, and train: in sync mode every update due after each chunk, in async mode (once learning has
        started) one update per round, chunks or not. Returns the reports received."""
        learning = self.agent.env_steps >= max(self.agent.config.learning_starts, self.agent.config.batch_size)
        heads = [p[0] for p in self.pending]
        t0 = time.perf_counter()
        if self.mode == "async" and learning:
            ready, _ = self.ray.wait(heads, num_returns=len(heads), timeout=0)
        else:
            self.ray.wait(heads, num_returns=1)  # block until one is ready, then take all that are
            ready, _ = self.ray.wait(heads, num_returns=len(heads), timeout=0)
        self.stats.wait_seconds += time.perf_counter() - t0
        ready_set = set(ready)
        reports = []
        for i in range(self.num_actors):
            if heads[i] not in ready_set:
                continue
            self.pending[i].popleft()
            try:
                report = self.ray.get(heads[i])
            except self.ray.exceptions.RayActorError as e:
                self._restart(i, e)
                continue
            self._ingest(i, report)
            reports.append(report)
            if self.mode == "sync":
                self._learn(self.agent.learner.learn)
            self.pending[i].append(self.workers[i].collect.remote(self.weights))
        if self.mode == "async" and learning:  # Ape-X: the learner never waits for data once it has some
            self._learn(self._one_update)
        return reports

    def _ingest(self, i: int, report: ChunkReport) -> None:
        t0 = time.perf_counter()
        rows = self.decoders[i].decode(report.chunk)
        if len(rows):
            ids = self.stream_bases[(i, report.restart_count)] + rows.env_ids
            self.agent.learner.add(rows.obs, rows.actions, rows.rewards, rows.next_obs, rows.terminated,
                                   rows.truncated, ids)
        s = self.stats
        s.chunks += 1
        s.transitions += len(rows)
        s.bytes_received += report.chunk.nbytes
        s.staleness.append(self.agent.gradient_steps - report.weight_version)
        s.nodes.add(report.node_id)
        s.ingest_seconds += time.perf_counter() - t0

    def _one_update(self) -> LearnMetrics | None:
        metrics = None
        for _ in range(self.agent.config.gradient_steps):
            metrics = self.agent.learner.gradient_step() or metrics
        self.agent.learner.counters.updates += 1
        return metrics

    def _learn(self, step: Callable[[], LearnMetrics | None]) -> None:
        t0, before = time.perf_counter(), self.agent.gradient_steps
        self.last_metrics = step() or self.last_metrics
        self.stats.gradient_steps += self.agent.gradient_steps - before
        if self.agent.gradient_steps - self.weights.version >= self.weight_sync_every:
            self._publish()
        self.stats.learn_seconds += time.perf_counter() - t0

    # --- state and shutdown ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs beyond the agent's checkpoint: the restart counts and the next unused
        stream id, so that its new incarnations (``restart_count + 1``) get new seeds and new replay streams."""
        return {"num_actors": self.num_actors, "num_envs": self.num_envs, "restart_counts": list(self.restart_counts),
                "next_stream": self.next_stream}

    def close(self) -> None:
        """Stop the env actors (their pending chunks are dropped)."""
        for w in self.workers:
            if w is not None:
                self.ray.kill(w, no_restart=True)
        self.workers = [None] * self.num_actors
        self.pending = [deque() for _ in range(self.num_actors)]


__all__ = ["FIRST_STREAM", "MODES", "ChunkReport", "DistributedSQN", "DistributedStats", "EnvWorker", "WeightsRef",
           "WorkerSpec", "actor_seed", "policy_weights_numpy"]
