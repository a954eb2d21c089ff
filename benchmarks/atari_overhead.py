"""Atari learner and actor against the bare cost of the networks: the update, replay sampling
and ``act`` latency with the Nature CNN on 4x84x84 frame stacks (ALE/Breakout-v5, the
``--preset atari-100k`` learner: batch 64).

    python benchmarks/atari_overhead.py            # the BENCHMARKS.md table
    python benchmarks/atari_overhead.py --quick    # < 1 minute smoke run

The agent's replay is filled with ``--fill`` random steps of the wrapped game, so it is the
frame-deduplicated buffer with real frames. Calls are timed one by one and interleaved (one
of each, in turn), so load from other processes hits all sides alike; medians are quoted.

* update: ``agent.learner.gradient_step()`` (sample 64 stacks from the replay, rebuild them, copy to
  torch, soft target, twin forward/backward, clip, Adam, temperature, Polyak) against the same
  twin-network forward/backward written in plain torch on one fixed batch that is already a
  float tensor ("bare"), on copies of the agent's networks: the same weights and the same
  channels-last layout. "bare NCHW" is the same step with torch's default memory layout, the
  cost before the channels-last change.
* sampling: ``agent.replay.sample(64)`` against fancy-indexing a naive uint8 array that holds
  every stacked observation and next observation (the layout the frame-deduplicated buffer
  replaces, 7.7x its memory per benchmarks/replay_memory.py).
* act: ``agent.act`` for one observation and for a batch of 8 against plain torch doing the
  same (two forwards, minimum, ``log_softmax(q / alpha)``, Gumbel-max) and the forwards alone.

The last line is ``RESULT {json}``; full runs also write ``benchmarks/results/atari_overhead.json``.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _common import RESULTS_DIR, machine_info, print_result, write_json
from overhead import interleave, summarize, twin_step

from sqn_agents import SQNAgent, SQNConfig

GAME = "ALE/Breakout-v5"


class BareTwin:
    """The agent's twin Q networks and targets as plain modules, stepped with plain torch."""

    def __init__(self, agent: SQNAgent, memory_format: torch.memory_format) -> None:
        def plain(net: torch.nn.Module) -> torch.nn.Sequential:
            body = copy.deepcopy(net.body)
            body.conv.to(memory_format=memory_format)
            return torch.nn.Sequential(body.conv, body.head)

        self.fmt = memory_format
        self.nets = [plain(n) for n in agent.q_nets]
        self.targets = [plain(n).requires_grad_(False) for n in agent.target_nets]
        self.params = [p for n in self.nets for p in n.parameters()]
        self.target_params = [p for n in self.targets for p in n.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=agent.config.learning_rate)
        self.cfg = agent.config
        self.alpha = float(agent.alpha.mean())
        self.gen = torch.Generator().manual_seed(0)

    def floats(self, obs_u8: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(obs_u8).contiguous(memory_format=self.fmt).float().div_(255.0)

    def step(self, *batch: torch.Tensor) -> None:
        twin_step(self, batch, self.cfg.gamma, self.alpha, self.cfg.tau)

    @torch.no_grad()
    def forwards(self, obs_u8: np.ndarray) -> torch.Tensor:
        x = self.floats(obs_u8 if obs_u8.ndim == 4 else obs_u8[None])
        return torch.minimum(self.nets[0](x), self.nets[1](x))

    @torch.no_grad()
    def act(self, obs_u8: np.ndarray) -> Any:
        log_pi = F.log_softmax(self.forwards(obs_u8) / self.alpha, dim=-1)
        u = torch.rand(log_pi.shape, generator=self.gen)
        a = (log_pi - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(dim=-1)
        return a.numpy() if obs_u8.ndim == 4 else int(a.item())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=200, help="timed calls per operation (act, sampling: 10x)")
    p.add_argument("--fill", type=int, default=5_000, help="random game steps stored before timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="20 reps, 600 steps of fill")
    a = p.parse_args()
    if a.quick:
        a.reps, a.fill = 20, 600
    torch.set_num_threads(1)
    machine = machine_info()
    from sqn_agents.train import PRESETS, make_env

    preset = PRESETS["atari-100k"]
    env = make_env(GAME, preset.atari)
    cfg = SQNConfig(**{**preset.config.to_dict(), "buffer_size": 10_000, "learning_starts": 100})
    agent = SQNAgent(env.observation_space, env.action_space, cfg, device="cpu", seed=a.seed)

    rng = np.random.default_rng(a.seed)
    obs, _ = env.reset(seed=a.seed)
    stacks = []  # naive layout: every stacked obs and next obs
    for _ in range(a.fill):
        action = int(rng.integers(env.action_space.n))
        next_obs, r, term, trunc, _ = env.step(action)
        agent.observe(obs, action, r, next_obs, term, trunc)
        stacks.append((obs, next_obs))
        obs = env.reset()[0] if term or trunc else next_obs
    naive_obs = np.stack([s[0] for s in stacks])
    naive_next = np.stack([s[1] for s in stacks])
    for _ in range(3):
        agent.learner.gradient_step()  # warm-up: Adam state exists, allocator is warm

    cl, nchw = BareTwin(agent, torch.channels_last), BareTwin(agent, torch.contiguous_format)
    b = agent.replay.sample(cfg.batch_size)
    fixed_u8 = (b[0], torch.from_numpy(b[1]), torch.from_numpy(b[2]), b[3], torch.from_numpy(b[4]))

    def fixed(twin: BareTwin) -> tuple[torch.Tensor, ...]:
        return (twin.floats(fixed_u8[0]), fixed_u8[1], fixed_u8[2], twin.floats(fixed_u8[3]), fixed_u8[4])

    batch_cl, batch_nchw = fixed(cl), fixed(nchw)
    results: dict[str, Any] = {}
    results["update"] = summarize(interleave(a.reps, {
        "agent.learner.gradient_step": agent.learner.gradient_step,
        "bare (channels-last)": lambda: cl.step(*batch_cl),
        "bare NCHW": lambda: nchw.step(*batch_nchw)}, warmup=3))

    idx_rng = np.random.default_rng(1)

    def naive_sample() -> tuple[np.ndarray, np.ndarray]:
        i = idx_rng.integers(0, len(naive_obs), size=cfg.batch_size)
        return naive_obs[i], naive_next[i]

    results["sampling"] = summarize(interleave(a.reps * 10, {
        "frame replay sample(64)": lambda: agent.replay.sample(cfg.batch_size),
        "naive stacked array, 64": naive_sample}))

    obs1, obs8 = stacks[50][0], np.stack([s[0] for s in stacks[100:108]])
    results["act_single"] = summarize(interleave(a.reps * 10, {
        "agent.act": lambda: agent.act(obs1), "bare act": lambda: cl.act(obs1),
        "nets only": lambda: cl.forwards(obs1)}))
    results["act_batch8"] = summarize(interleave(a.reps * 10, {
        "agent.act": lambda: agent.act(obs8), "bare act": lambda: cl.act(obs8),
        "nets only": lambda: cl.forwards(obs8)}))

    def ratio(part: str, num: str, den: str) -> float:
        return round(results[part][num]["median_us"] / results[part][den]["median_us"], 3)

    ratios = {
        "update: agent/bare": ratio("update", "agent.learner.gradient_step", "bare (channels-last)"),
        "update: bare NCHW/bare channels-last": ratio("update", "bare NCHW", "bare (channels-last)"),
        "update: agent/bare NCHW": ratio("update", "agent.learner.gradient_step", "bare NCHW"),
        "sampling: frame replay/naive": ratio("sampling", "frame replay sample(64)", "naive stacked array, 64"),
        "sampling: share of agent update": round(results["sampling"]["frame replay sample(64)"]["median_us"]
                                                 / results["update"]["agent.learner.gradient_step"]["median_us"], 4),
        "act_single: agent/bare": ratio("act_single", "agent.act", "bare act"),
        "act_single: agent/nets only": ratio("act_single", "agent.act", "nets only"),
        "act_batch8: agent/bare": ratio("act_batch8", "agent.act", "bare act"),
        "act_batch8: agent/nets only": ratio("act_batch8", "agent.act", "nets only"),
    }
    print(f"{GAME}, Nature CNN, batch {cfg.batch_size}, one torch thread; medians of interleaved calls (µs)")
    for part, rows in results.items():
        print(f"  {part}")
        for name, s in rows.items():
            print(f"    {name:<26} {s['median_us']:10.1f}   (p10 {s['p10_us']:.1f}, p90 {s['p90_us']:.1f})")
    for k, v in ratios.items():
        print(f"  {k:<38} {v}")
    result = {"benchmark": "atari_overhead", "quick": a.quick, "env_id": GAME, "batch_size": cfg.batch_size,
              "reps": a.reps, "fill": a.fill, "machine": machine, "timings": results, "ratios": ratios}
    print_result(result)
    if not a.quick:
        write_json(RESULTS_DIR / "atari_overhead.json", result)


if __name__ == "__main__":
    main()
