"""Env steps/s of the whole SQN training loop on Atari with 1, 2 and 4 envs: gymnasium's
``AsyncVectorEnv`` of ``make_atari_env`` games against ale-py's ``AtariVectorEnv``
(``make_atari_vector_env``), and of the two envs alone.

    python benchmarks/atari_loop_throughput.py            # Breakout, 3 rounds (about 4 minutes on 2 cores)
    python benchmarks/atari_loop_throughput.py --quick    # 1 round, short budgets (about 35 s)

Routes, both with ``make_atari_env``'s default settings (sticky actions 0.25, no-op starts,
FIRE on reset, an episode per life, clipped rewards, 4x84x84 uint8 stacks) and NEXT_STEP autoreset:

* ``async``: ``gymnasium.vector.AsyncVectorEnv([partial(make_atari_env, game)] * n)``, one
  worker process per sub-env;
* ``ale_vector``: ``make_atari_vector_env(game, n)``, C++ preprocessing and stacking, worker
  threads (ale-py's default: ``min(n, CPU count)``).

Loop: ``sqn_agents.loop.interact`` (``agent.act(obs) -> envs.step -> agent.observe(..., info=info) ->
agent.learn()``) with
``SQNConfig(batch_size=32, buffer_size=20_000, learning_starts=500, train_freq=4)`` (the Nature
CNN chosen for the image space, frame-deduplicated replay, one gradient step per 4 stored
transitions), CPU, ``torch.set_num_threads(1)``. Each (route, n) keeps one agent and one env
set for the whole run; a warm-up runs until ``learning_starts + 200`` transitions are stored
(``+ 20`` with ``--quick``), so every timed window includes updates. The share of the loop's
time spent in ``envs.step`` is reported too. Then each round times a fixed budget of env steps
(``steps // n`` vector steps) for every n, the two routes one after the other in an order that
alternates between rounds, so that drift of a shared machine hits both alike. Env-only: the same
with seeded random actions and no agent.

Medians over rounds and the medians of the per-round ratios ale_vector/async are printed, as
Markdown tables; the last line is ``RESULT {json}``; full runs also write it to
``benchmarks/results/atari_loop_throughput.json``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import time
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _common import RESULTS_DIR, machine_info, median, print_result, write_json

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.loop import interact
from wrappers import make_atari_env, make_atari_vector_env

ROUTES = ("async", "ale_vector")
NUM_ENVS = (1, 2, 4)
CONFIG = dict(batch_size=32, buffer_size=20_000, learning_starts=500, train_freq=4)


def make_envs(route: str, game: str, n: int) -> gym.vector.VectorEnv:
    if route == "async":
        return gym.vector.AsyncVectorEnv([functools.partial(make_atari_env, game)] * n)
    return make_atari_vector_env(game, n)


class TimedStep(gym.vector.VectorWrapper):
    """Adds up the seconds spent in the wrapped vector env's ``step``."""

    def __init__(self, envs: gym.vector.VectorEnv) -> None:
        super().__init__(envs)
        self.seconds = 0.0

    def step(self, actions: Any):
        t0 = time.perf_counter()
        out = self.env.step(actions)
        self.seconds += time.perf_counter() - t0
        return out


class Loop:
    """One env set and its agent, stepped through the whole training loop."""

    def __init__(self, route: str, game: str, n: int, seed: int) -> None:
        self.envs = TimedStep(make_envs(route, game, n))
        self.n = n
        self.agent = SQNAgent(self.envs.single_observation_space, self.envs.single_action_space, SQNConfig(**CONFIG),
                              device="cpu", seed=seed, autoreset_mode=self.envs.metadata["autoreset_mode"])
        self.steps = interact(self.agent, self.envs, self.envs.reset(seed=seed)[0])

    @property
    def step_time(self) -> float:
        """Seconds spent in envs.step."""
        return self.envs.seconds

    def run(self, vector_steps: int) -> None:
        for _ in itertools.islice(self.steps, vector_steps):
            pass

    def warm_up(self, extra: int) -> None:
        while self.agent.env_steps < CONFIG["learning_starts"] + extra:
            self.run(1)


def time_loop(loop: Loop, env_steps: int) -> dict[str, float]:
    vector_steps = max(1, env_steps // loop.n)
    grad0, step0 = loop.agent.gradient_steps, loop.step_time
    t0 = time.perf_counter()
    loop.run(vector_steps)
    wall = time.perf_counter() - t0
    return {"steps_per_s": vector_steps * loop.n / wall, "gradient_steps": loop.agent.gradient_steps - grad0,
            "env_share": (loop.step_time - step0) / wall}


def time_env(envs: gym.vector.VectorEnv, actions: np.ndarray) -> float:
    """Env steps/s of ``envs`` stepped through ``actions`` (vector steps x n), random play, autoreset."""
    t0 = time.perf_counter()
    for a in actions:
        envs.step(a)
    return actions.size / (time.perf_counter() - t0)


def ratios(rounds: list[dict[str, dict[int, float]]]) -> dict[int, dict[str, float]]:
    out = {}
    for n in NUM_ENVS:
        per_round = [r["ale_vector"][n] / r["async"][n] for r in rounds]
        out[n] = {"median": round(median(per_round), 3), "min": round(min(per_round), 3),
                  "max": round(max(per_round), 3)}
    return out


def table(title: str, med: dict[str, dict[int, float]], rat: dict[int, dict[str, float]]) -> str:
    lines = [f"{title}", "", "| envs | AsyncVectorEnv of make_atari_env | make_atari_vector_env | ratio (median of rounds, min-max) |",
             "|---|---|---|---|"]
    for n in NUM_ENVS:
        r = rat[n]
        lines.append(f"| {n} | {med['async'][n]:,.0f} | {med['ale_vector'][n]:,.0f} | "
                     f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="ALE/Breakout-v5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop-steps", type=int, default=500, help="env steps per timed loop window")
    parser.add_argument("--env-steps", type=int, default=3_000, help="env steps per timed env-only window")
    parser.add_argument("--env-rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1 round of 120 loop steps, 2 env-only rounds of 800 steps")
    args = parser.parse_args()
    warmup_extra = 200
    if args.quick:
        args.rounds, args.loop_steps, args.env_steps, args.env_rounds, warmup_extra = 1, 120, 800, 2, 20
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", category=UserWarning)
    machine = machine_info()
    start = time.perf_counter()

    # ------------------------------------------------------------------ env only
    env_sets = {(route, n): make_envs(route, args.game, n) for n in NUM_ENVS for route in ROUTES}
    rng = np.random.default_rng(args.seed)
    n_actions = int(env_sets[("async", 1)].single_action_space.n)
    for (_, n), envs in env_sets.items():
        envs.reset(seed=args.seed)
        time_env(envs, rng.integers(n_actions, size=(max(1, 400 // n), n)))  # warm-up
    env_rounds: list[dict[str, dict[int, float]]] = []
    for r in range(args.env_rounds):
        row: dict[str, dict[int, float]] = {route: {} for route in ROUTES}
        for n in NUM_ENVS:
            actions = rng.integers(n_actions, size=(args.env_steps // n, n))  # the same actions for both routes
            for route in ROUTES if (r + n) % 2 == 0 else ROUTES[::-1]:
                row[route][n] = time_env(env_sets[(route, n)], actions)
        env_rounds.append(row)
        print(f"env only, round {r + 1}/{args.env_rounds}: " + ", ".join(
            f"{n} envs {row['async'][n]:,.0f} / {row['ale_vector'][n]:,.0f}" for n in NUM_ENVS)
            + " steps/s (async / ale_vector)", flush=True)
    for envs in env_sets.values():
        envs.close()

    # ------------------------------------------------------------------ whole loop
    loops = {}
    for n in NUM_ENVS:
        for route in ROUTES:
            loops[(route, n)] = Loop(route, args.game, n, args.seed)
            t0 = time.perf_counter()
            loops[(route, n)].warm_up(warmup_extra)
            print(f"warm-up {route} x{n}: {loops[(route, n)].agent.env_steps} transitions in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
    loop_rounds: list[dict[str, dict[int, float]]] = []
    grad_steps: dict[str, dict[int, int]] = {route: {} for route in ROUTES}
    env_share: dict[str, dict[int, list[float]]] = {route: {n: [] for n in NUM_ENVS} for route in ROUTES}
    for r in range(args.rounds):
        row = {route: {} for route in ROUTES}
        for n in NUM_ENVS:
            for route in ROUTES if (r + n) % 2 == 0 else ROUTES[::-1]:
                timed = time_loop(loops[(route, n)], args.loop_steps)
                row[route][n] = timed["steps_per_s"]
                grad_steps[route][n] = timed["gradient_steps"]
                env_share[route][n].append(timed["env_share"])
        loop_rounds.append(row)
        print(f"loop, round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} envs {row['async'][n]:,.0f} / {row['ale_vector'][n]:,.0f}" for n in NUM_ENVS)
            + " env steps/s (async / ale_vector)", flush=True)
    for loop in loops.values():
        loop.envs.close()

    def medians(rounds: list[dict[str, dict[int, float]]]) -> dict[str, dict[int, float]]:
        return {route: {n: round(median([rd[route][n] for rd in rounds]), 1) for n in NUM_ENVS} for route in ROUTES}

    loop_med, env_med = medians(loop_rounds), medians(env_rounds)
    loop_rat, env_rat = ratios(loop_rounds), ratios(env_rounds)
    print()
    print(table(f"Whole loop (act, step, observe, learn), {args.game}, env steps/s, median of {args.rounds} rounds "
                f"x {args.loop_steps:,} env steps:", loop_med, loop_rat))
    print()
    print(table(f"Envs alone (random actions), {args.game}, env steps/s, median of {args.env_rounds} rounds "
                f"x {args.env_steps:,} env steps:", env_med, env_rat))
    share = {route: {n: round(median(env_share[route][n]), 3) for n in NUM_ENVS} for route in ROUTES}
    print(f"\nshare of the loop's time in envs.step (median): {share}")
    print(f"gradient steps per timed loop window: {grad_steps}; total run time {time.perf_counter() - start:.0f} s")
    result: dict[str, Any] = {
        "benchmark": "atari_loop_throughput",
        "quick": args.quick,
        "game": args.game,
        "num_envs": list(NUM_ENVS),
        "sqn_config": CONFIG,
        "loop": {"rounds": args.rounds, "env_steps_per_window": args.loop_steps, "steps_per_s_median": loop_med,
                 "ratio_ale_vector_to_async": loop_rat, "gradient_steps_per_window": grad_steps,
                 "env_step_share_median": share,
                 "steps_per_s_all": {route: {n: [round(rd[route][n], 1) for rd in loop_rounds] for n in NUM_ENVS}
                                     for route in ROUTES}},
        "env_only": {"rounds": args.env_rounds, "env_steps_per_window": args.env_steps,
                     "steps_per_s_median": env_med, "ratio_ale_vector_to_async": env_rat,
                     "steps_per_s_all": {route: {n: [round(rd[route][n], 1) for rd in env_rounds] for n in NUM_ENVS}
                                         for route in ROUTES}},
        "wall_s": round(time.perf_counter() - start, 1),
        "machine": machine,
    }
    if not args.quick:
        write_json(RESULTS_DIR / "atari_loop_throughput.json", result)
    print_result(result)


if __name__ == "__main__":
    main()
