"""Distributed SQN on Ray (``sqn_agents.distributed``) next to the single-process loop, in the same run.

    python benchmarks/distributed.py            # CartPole-v1 and ALE/Breakout-v5 (about 6 minutes on 2 cores)
    python benchmarks/distributed.py --quick    # CartPole only, 1 and 2 actors, short budgets (about 40 s)

For each env, with learning off (``learning_starts`` never reached: collection alone) and on:

* ``single``: sqn-train's loop in one process, ``act -> envs.step -> observe -> learn`` on a
  ``SyncVectorEnv`` of one env;
* ``ray-N``: ``DistributedSQN`` with N = 1, 2, 4 env actors (one env each, sync mode), on a local
  Ray instance with ``num_cpus = max(4, cores)`` so that 4 actors are scheduled on a 2-core machine;
* ``ray-2-async``: 2 actors, async mode (learning on only).

Every configuration first collects until ``learning_starts + 200`` transitions are stored (learning on)
or for a warm-up budget (off); then a fixed budget of stored transitions is timed. Reported: env
steps/s (stored transitions per second), learner gradient steps/s, the replay ratio reached, the
share of the driver's time spent waiting for chunks, weight staleness at arrival (gradient steps
between the weights that made a chunk and the learner's), and bytes per transition sent (the
chunks' arrays: frame stacks travel as single new frames).

Learner settings: CartPole ``SQNConfig(learning_starts=1000)`` defaults otherwise (one gradient step
per transition, batch 128, (256, 256) MLP); Breakout as ``benchmarks/atari_loop_throughput.py``
(batch 32, train_freq 4, Nature CNN, frame-deduplicated replay). CPU learner, one torch thread.
The last line is ``RESULT {json}``; full runs also write ``benchmarks/results/distributed.json``.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _common import RESULTS_DIR, machine_info, print_result, write_json

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.distributed import DistributedSQN, DistributedStats
from sqn_agents.train import make_env

LEARN_CONFIG = {
    "CartPole-v1": dict(learning_starts=1000),
    "ALE/Breakout-v5": dict(batch_size=32, buffer_size=20_000, learning_starts=500, train_freq=4),
}


def _config(env_id: str, learning: bool) -> SQNConfig:
    cfg = dict(LEARN_CONFIG[env_id])
    if not learning:
        cfg["learning_starts"] = 10**9
    return SQNConfig(**cfg)


def _warmup(env_id: str, learning: bool, quick: bool) -> int:
    return LEARN_CONFIG[env_id]["learning_starts"] + (20 if quick else 200) if learning else (200 if quick else 500)


def single_process(env_id: str, learning: bool, budget: int, quick: bool) -> dict[str, Any]:
    env_fn = functools.partial(make_env, env_id)
    envs = gym.vector.SyncVectorEnv([env_fn])
    agent = SQNAgent(envs.single_observation_space, envs.single_action_space, _config(env_id, learning),
                     device="cpu", seed=0, autoreset_mode=envs.metadata["autoreset_mode"])
    obs, _ = envs.reset(seed=0)

    def play(until: int) -> None:
        nonlocal obs
        while agent.env_steps < until:
            actions = agent.act(obs)
            next_obs, rewards, terminated, truncated, infos = envs.step(actions)
            agent.observe(obs, actions, rewards, next_obs, terminated, truncated, info=infos)
            agent.learn()
            obs = next_obs

    play(_warmup(env_id, learning, quick))
    steps0, grads0, t0 = agent.env_steps, agent.gradient_steps, time.perf_counter()
    play(steps0 + budget)
    wall = time.perf_counter() - t0
    envs.close()
    steps, grads = agent.env_steps - steps0, agent.gradient_steps - grads0
    return {"env_steps_per_second": round(steps / wall, 1), "gradient_steps_per_second": round(grads / wall, 1),
            "replay_ratio": round(grads / steps, 4), "transitions": steps, "wall_s": round(wall, 2)}


def distributed(env_id: str, learning: bool, actors: int, mode: str, budget: int, quick: bool) -> dict[str, Any]:
    env_fn = functools.partial(make_env, env_id)
    probe = env_fn()
    agent = SQNAgent(probe.observation_space, probe.action_space, _config(env_id, learning), device="cpu", seed=0)
    probe.close()
    run = DistributedSQN(agent, env_fn, num_actors=actors, mode=mode, steps_per_chunk=32, weight_sync_every=100,
                         seed=0)
    while agent.env_steps < _warmup(env_id, learning, quick):
        run.poll()
    run.stats = DistributedStats()  # time only the window below
    start = agent.env_steps
    while agent.env_steps < start + budget:
        run.poll()
    summary = run.stats.summary()
    run.close()
    keys = ("env_steps_per_second", "gradient_steps_per_second", "replay_ratio", "wait_share", "learn_share",
            "staleness_mean", "staleness_max", "bytes_per_transition", "transitions")
    return {k: summary[k] for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import ray

    torch.set_num_threads(1)
    info = machine_info()
    # address="local": a new instance even where another Ray cluster runs on this machine
    ray.init(address="local", num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    envs = ["CartPole-v1"] if args.quick else ["CartPole-v1", "ALE/Breakout-v5"]
    actor_counts = (1, 2) if args.quick else (1, 2, 4)
    results: dict[str, Any] = {}
    for env_id in envs:
        atari = env_id.startswith("ALE/")
        rows = {}
        for learning in (False, True):
            budget = {(False, False): 4000, (False, True): 3000, (True, False): 1500, (True, True): 600}[(atari, learning)]
            if args.quick:
                budget //= 10
            label = "on" if learning else "off"
            rows[f"single/{label}"] = single_process(env_id, learning, budget, args.quick)
            print(env_id, f"single/{label}", rows[f"single/{label}"], flush=True)
            for n in actor_counts:
                rows[f"ray-{n}/{label}"] = distributed(env_id, learning, n, "sync", budget, args.quick)
                print(env_id, f"ray-{n}/{label}", rows[f"ray-{n}/{label}"], flush=True)
            if learning and not args.quick:
                rows["ray-2-async/on"] = distributed(env_id, learning, 2, "async", budget, args.quick)
                print(env_id, "ray-2-async/on", rows["ray-2-async/on"], flush=True)
        results[env_id] = rows
    ray.shutdown()

    for env_id, rows in results.items():
        print(f"\n{env_id}\n")
        print("| config | env steps/s | grad steps/s | replay ratio | wait share | staleness mean/max | bytes/transition |")
        print("|---|---|---|---|---|---|---|")
        for name, r in rows.items():
            stale = f"{r['staleness_mean']:g} / {r['staleness_max']}" if "staleness_mean" in r else "-"
            print(f"| {name} | {r['env_steps_per_second']:g} | {r['gradient_steps_per_second']:g} | {r['replay_ratio']:g} "
                  f"| {r.get('wait_share', '-')} | {stale} | {r.get('bytes_per_transition', '-')} |")
    result = {"benchmark": "distributed", "quick": args.quick, "results": results, "machine": info,
              "ray": ray.__version__, "numpy": np.__version__}
    if not args.quick:
        write_json(RESULTS_DIR / "distributed.json", result)
    print_result(result)


if __name__ == "__main__":
    main()
