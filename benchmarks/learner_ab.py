"""Time this checkout's ``learner.gradient_step()`` and ``act`` (CartPole-v1, SQN defaults), to compare two commits.

    # two checkouts, started together so that both see the same load from other processes:
    (cd ../old && python benchmarks/learner_ab.py --label old) & (cd ../new && python benchmarks/learner_ab.py --label new)
    python benchmarks/learner_ab.py --quick       # < 1 minute smoke run

One process cannot import two versions of ``sqn_agents``, so the comparison of commits is two
processes run side by side: each alternates gradient steps and act calls in rounds for
``--seconds`` seconds and reports the medians of wall time and of the thread's CPU time
(``time.thread_time_ns``, which leaves out waiting for a core: the figure to compare on a busy
machine). The replay holds 2,000 random CartPole steps and the learner has taken every update
due on it first (trained networks and Adam moments). The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import torch
from _common import machine_info, median, print_result
from overhead import fill

from sqn_agents import SQNAgent, SQNConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", default="this checkout")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--quick", action="store_true", help="5 seconds, 1,200 steps of fill")
    a = p.parse_args()
    torch.set_num_threads(1)
    machine = machine_info()
    env = gym.make("CartPole-v1")
    agent = SQNAgent(env.observation_space, env.action_space, SQNConfig(), device="cpu", seed=0)
    transitions = fill(agent, env, 1_200 if a.quick else 2_000, seed=0)
    agent.learn()
    obs = transitions[7][0]
    times: dict[str, list[tuple[float, float]]] = {"gradient_step": [], "act": []}

    def timed(name: str, fn: Any) -> None:
        w, c = time.perf_counter_ns(), time.thread_time_ns()
        fn()
        times[name].append(((time.perf_counter_ns() - w) / 1e3, (time.thread_time_ns() - c) / 1e3))

    deadline = time.perf_counter() + (5.0 if a.quick else a.seconds)
    while time.perf_counter() < deadline:
        timed("gradient_step", agent.learner.gradient_step)
        for _ in range(3):
            timed("act", lambda: agent.act(obs))
    result: dict[str, Any] = {"benchmark": "learner_ab", "quick": a.quick, "label": a.label,
                              "gradient_steps": len(times["gradient_step"]), "machine": machine}
    for name, samples in times.items():
        result[f"{name}_median_us"] = round(median([w for w, _ in samples]), 1)
        result[f"{name}_cpu_median_us"] = round(median([c for _, c in samples]), 1)
    print(f"{a.label}: gradient step {result['gradient_step_median_us']} µs wall, "
          f"{result['gradient_step_cpu_median_us']} µs CPU; act {result['act_median_us']} µs wall, "
          f"{result['act_cpu_median_us']} µs CPU (medians of {len(times['gradient_step'])} and {len(times['act'])} calls)")
    print_result(result)


if __name__ == "__main__":
    main()
