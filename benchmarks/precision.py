"""bf16 against fp32 (``SQNConfig.precision``) on the CPU: the learner's gradient step and ``act``,
for the MLP (CartPole-v1 shapes, the SQN defaults: batch 128) and the Nature CNN (Atari
4x84x84 uint8 frame stacks, the ``--preset atari-100k`` learner: batch 64).

    python benchmarks/precision.py                # the BENCHMARKS.md table
    python benchmarks/precision.py --compile      # adds torch.compile'd networks (fp32 and bf16)
    python benchmarks/precision.py --quick        # < 1 minute smoke run

The learners of one network are built from the same seed and given the same random
transitions (the CNN's replay is the uniform one here, so sampling costs the same on every
side and only the networks differ). Every timed call is ``learner.gradient_step()`` or
``actor.act(obs)``, and the variants are interleaved one call each, in turn, so load from other
processes hits them alike. Each call is timed twice: wall time, and the CPU time of the calling
thread (``time.thread_time_ns``; torch runs on one thread here), which leaves out the time the
process waited for a core and so stays comparable on a busy machine. Reported: medians, and the
ratio of each variant's median to fp32's, for both clocks.
``--compile`` wraps each network's torso in ``torch.compile`` (the inductor backend, compiled
during the warm-up calls, which are not timed).

The last line is ``RESULT {json}``; full runs also write ``benchmarks/results/precision[_compile][_<networks>].json``.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _common import RESULTS_DIR, machine_info, median, print_result, write_json

from sqn_agents import SQNConfig
from sqn_agents.actor import Actor
from sqn_agents.learner import Learner

NETWORKS = {
    # name: observation space, action space, config, act batch sizes
    "mlp": (gym.spaces.Box(-4.8, 4.8, (4,), np.float32), gym.spaces.Discrete(2), SQNConfig(replay="uniform"), (1, 32)),
    "nature_cnn": (gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4),
                   SQNConfig(batch_size=64, learning_rate=3e-4, buffer_size=5_000, replay="uniform"), (1, 8)),
}


def learner_for(network: str, precision: str, compiled: bool, fill: int, device: str = "cpu",
                replay_on_device: bool = False) -> Learner:
    """A learner of that network and precision whose replay holds ``fill`` random transitions (the same for all)."""
    obs_space, act_space, config, _ = NETWORKS[network]
    config = SQNConfig(**{**config.to_dict(), "precision": precision, "replay_on_device": replay_on_device})
    learner = Learner(obs_space, act_space, config, device=device, seed=0)
    rng = np.random.default_rng(0)
    for start in range(0, fill, 500):  # the same transitions for every variant
        n = min(500, fill - start)
        if obs_space.dtype == np.uint8:
            obs = rng.integers(0, 256, (n + 1, *obs_space.shape), dtype=np.uint8)
        else:
            obs = rng.uniform(-1, 1, (n + 1, *obs_space.shape)).astype(np.float32)
        learner.add(obs[:-1], rng.integers(0, act_space.n, (n, 1)), rng.normal(size=n).astype(np.float32), obs[1:],
                    rng.random(n) < 0.02, np.zeros(n, bool))
    if compiled:
        for net in (*learner.q_nets, *learner.target_nets):
            net.body = torch.compile(net.body)
    return learner


def interleave(reps: int, fns: dict[str, Any], warmup: int) -> dict[str, dict[str, list[float]]]:
    """Call each fn once per round, in turn; wall and thread-CPU microseconds of the last ``reps`` rounds."""
    out: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in fns}
    for i in range(warmup + reps):
        for name, fn in fns.items():
            w, c = time.perf_counter_ns(), time.thread_time_ns()
            fn()
            c, w = time.thread_time_ns() - c, time.perf_counter_ns() - w
            if i >= warmup:
                out[name]["wall"].append(w / 1e3)
                out[name]["cpu"].append(c / 1e3)
    return out


def summary(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per variant: median wall and CPU time and their ratios to fp32's."""
    ref = samples["fp32"]
    return {k: {"median_us": round(median(v["wall"]), 1), "ratio_to_fp32": round(median(v["wall"]) / median(ref["wall"]), 3),
                "cpu_median_us": round(median(v["cpu"]), 1),
                "cpu_ratio_to_fp32": round(median(v["cpu"]) / median(ref["cpu"]), 3), "n": len(v["wall"])}
            for k, v in samples.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=300, help="timed gradient steps per variant (act: 5x as many calls)")
    p.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd networks")
    p.add_argument("--quick", action="store_true", help="10 gradient steps and 50 act calls per variant")
    a = p.parse_args()
    if a.quick:
        a.reps = 10
    torch.set_num_threads(1)
    machine = machine_info()
    variants = [("fp32", False), ("bf16", False)] + ([("fp32", True), ("bf16", True)] if a.compile else [])
    name = {v: v[0] + (" compiled" if v[1] else "") for v in variants}
    results: dict[str, Any] = {}
    t_start = time.perf_counter()
    for network in a.networks:
        config = NETWORKS[network][2]
        learners = {name[v]: learner_for(network, *v, fill=max(config.batch_size * 4, 1_000)) for v in variants}
        warmup = 3 if a.quick else 20
        steps = interleave(a.reps, {k: learner.gradient_step for k, learner in learners.items()}, warmup=warmup)
        obs_space, act_space = NETWORKS[network][:2]
        acts: dict[str, dict[str, list[float]]] = {}
        for batch in NETWORKS[network][3]:
            obs = np.stack([obs_space.sample() for _ in range(batch)]) if batch > 1 else obs_space.sample()
            actors = {k: Actor(obs_space, act_space, learner.q_nets, learner.log_alpha, seed=0,
                               precision=learner.config.precision) for k, learner in learners.items()}
            acts[f"act batch {batch}"] = interleave(a.reps * 5, {k: (lambda actor=actor, obs=obs: actor.act(obs))
                                                                 for k, actor in actors.items()}, warmup=warmup)
        parts = {"gradient step": steps, **acts}
        results[network] = {part: summary(samples) for part, samples in parts.items()}
    print(f"bf16 against fp32 on the CPU, one torch thread; medians of interleaved calls, wall | thread CPU (µs), "
          f"ratio to fp32; load {machine['loadavg_at_start']}")
    for network, parts in results.items():
        print(f"  {network}")
        for part, rows in parts.items():
            cells = ", ".join(f"{k} {r['median_us']:.0f} ({r['ratio_to_fp32']:.2f}x) | {r['cpu_median_us']:.0f} "
                              f"({r['cpu_ratio_to_fp32']:.2f}x)" for k, r in rows.items())
            print(f"    {part:<14} {cells}")
    result = {"benchmark": "precision", "quick": a.quick, "reps": a.reps, "compile": a.compile,
              "cpu_has_avx512_bf16": "avx512_bf16" in " ".join(machine.get("lscpu_head", [])),
              "seconds": round(time.perf_counter() - t_start, 1), "machine": machine, "results": results,
              "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
    print_result(result)
    if not a.quick:
        stem = "precision" + ("_compile" if a.compile else "") + ("" if a.networks == list(NETWORKS) else
                                                                  "_" + "_".join(a.networks))
        write_json(RESULTS_DIR / f"{stem}.json", result)


if __name__ == "__main__":
    main()
