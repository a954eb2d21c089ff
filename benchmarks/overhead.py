"""The agent's overhead against the bare limit: ``act``, ``observe`` and ``learn`` against the
same networks called directly through plain torch, against the raw env step, and the share of
the whole loop's time spent outside the env and the networks. CartPole-v1, SQN defaults.

    python benchmarks/overhead.py                 # the BENCHMARKS.md table
    python benchmarks/overhead.py --quick         # < 1 minute smoke run

Every operation is timed call by call with ``time.perf_counter_ns`` and the measurements of
the agent and of its bare counterpart are interleaved (one call of each, in turn), so load
from other processes hits both alike. Reported: medians over ``--reps`` calls and the ratio
of the medians.

The bare counterparts (all on deep copies of the agent's own torch modules, so the same
architecture and weights):

* act: ``torch.from_numpy``, the two Q networks, ``minimum``, ``log_softmax(q / alpha)``,
  Gumbel-max sampling, ``.item()`` / ``.numpy()``. "nets only" is the two forward passes alone.
* observe: writing the transition into preallocated numpy arrays (a ring index and six stores).
* learn (the agent first takes every gradient step due on a replay of 5,000 random steps, so its
  networks and Adam moments are those of a trained agent; the bare side starts from copies of
  them, optimizer state included): sample 128 indices from the same replay arrays,
  ``torch.from_numpy``, target ``r + gamma (1 - d) alpha logsumexp(min(Q1', Q2') / alpha)``, twin forward, MSE, backward,
  gradient-norm clip, Adam step, the temperature loss and its Adam step, Polyak
  ``_foreach_lerp_``. "nets only" drops the replay sampling, the temperature and the clip.
  "bare, flush denormals" is the bare step under ``torch.set_flush_denormal(True)``, on its own
  copy: the cost of the subnormal floats that Adam's first moments of dead ReLU weights decay into.

``agent.learn()`` is timed with the cadence set so that exactly one gradient step is due
(``env_steps`` is advanced by one before each call, outside the timed region).

The whole-loop share: ``sqn_agents.loop.interact`` (act, env.step, observe, learn) runs ``--loop-steps``
steps after the warm-up, each step timed; time outside the env and the networks is
``loop - env.step - bare act - bare gradient step`` (all medians; one act and one gradient
step per env step). The last line is ``RESULT {json}``; full runs also write it to
``benchmarks/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from _common import RESULTS_DIR, machine_info, median, print_result, write_json

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.loop import interact

ENV_ID = "CartPole-v1"


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t) / 1e3  # microseconds


def interleave(reps: int, fns: dict[str, Callable[[], Any]], before: Callable[[], None] | None = None,
               warmup: int = 20) -> dict[str, list[float]]:
    """Time each fn once per round, in turn, ``reps`` rounds; ``before`` runs untimed before every call."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + reps):
        for name, fn in fns.items():
            if before is not None:
                before()
            t = timed(fn)
            if i >= warmup:
                out[name].append(t)
    return out


class Bare:
    """The agent's computations written directly in torch and numpy, on copies of its modules."""

    def __init__(self, agent: SQNAgent) -> None:
        cfg = agent.config
        self.cfg = cfg
        self.nets = [copy.deepcopy(net.body) for net in agent.q_nets]  # the MLPs themselves
        self.targets = [copy.deepcopy(net.body).requires_grad_(False) for net in agent.target_nets]
        self.params = [p for net in self.nets for p in net.parameters()]
        self.target_params = [p for net in self.targets for p in net.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=cfg.learning_rate)
        # The same optimizer state as the agent's (same parameter order), so both sides do the same
        # arithmetic: Adam moments of a trained network hold subnormal floats, which are slow on x86.
        self.opt.load_state_dict(agent.q_optimizer.state_dict())
        self.log_alpha = agent.log_alpha.detach().clone().requires_grad_(True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_learning_rate)
        self.alpha_opt.load_state_dict(agent.alpha_optimizer.state_dict())
        self.entropy_target = float(agent.entropy_target.sum())
        self.gen = torch.Generator().manual_seed(0)
        self.rng = np.random.default_rng(0)
        self.replay = agent.replay  # the same filled arrays
        capacity, shape = agent.replay.capacity, agent.replay.obs_shape
        self.ring = {"obs": np.zeros((capacity, *shape), np.float32), "next_obs": np.zeros((capacity, *shape), np.float32),
                     "actions": np.zeros((capacity, 1), np.int64), "rewards": np.zeros(capacity, np.float32),
                     "terminated": np.zeros(capacity, np.float32), "truncated": np.zeros(capacity, np.float32)}
        self.pos = 0

    # act ------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray) -> int | np.ndarray:
        batched = obs.ndim == 2
        x = torch.from_numpy(obs if batched else obs[None])
        q = torch.minimum(self.nets[0](x), self.nets[1](x))
        log_pi = F.log_softmax(q / self.log_alpha.detach().exp(), dim=-1)
        u = torch.rand(log_pi.shape, generator=self.gen)
        a = (log_pi - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(dim=-1)
        return a.numpy() if batched else int(a.item())

    @torch.no_grad()
    def nets_forward(self, obs: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(obs if obs.ndim == 2 else obs[None])
        return torch.minimum(self.nets[0](x), self.nets[1](x))

    # observe --------------------------------------------------------------
    def observe(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, term: bool,
                trunc: bool) -> None:
        i, r = self.pos, self.ring
        r["obs"][i] = obs
        r["next_obs"][i] = next_obs
        r["actions"][i] = action
        r["rewards"][i] = reward
        r["terminated"][i] = term
        r["truncated"][i] = trunc
        self.pos = (i + 1) % len(r["rewards"])

    # learn ----------------------------------------------------------------
    def batch(self) -> tuple[torch.Tensor, ...]:
        rp = self.replay
        idx = self.rng.integers(0, rp.size, size=self.cfg.batch_size)
        return (torch.from_numpy(rp.obs[idx]), torch.from_numpy(rp.actions[idx]), torch.from_numpy(rp.rewards[idx]),
                torch.from_numpy(rp.next_obs[idx]), torch.from_numpy(rp.terminated[idx]))

    def gradient_step(self) -> None:
        cfg = self.cfg
        obs, actions, rewards, next_obs, terminated = self.batch()
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_q = torch.minimum(self.targets[0](next_obs), self.targets[1](next_obs))
            v = alpha * torch.logsumexp(next_q / alpha, dim=-1)
            y = rewards + cfg.gamma * (1.0 - terminated) * v
        q1, q2 = self.nets[0](obs), self.nets[1](obs)
        loss = F.mse_loss(q1.gather(1, actions).squeeze(1), y) + F.mse_loss(q2.gather(1, actions).squeeze(1), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.opt.step()
        with torch.no_grad():
            log_pi = F.log_softmax(torch.minimum(q1, q2) / alpha, dim=-1)
            entropy = -(log_pi.exp() * log_pi).sum(dim=-1)
        alpha_loss = (self.log_alpha * (entropy - self.entropy_target)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.target_params, self.params, cfg.tau)

    def nets_only_step(self, fixed: tuple[torch.Tensor, ...]) -> None:
        """Forward/backward/Adam of the twin networks on a fixed batch: no sampling, temperature or clip."""
        twin_step(self, fixed, self.cfg.gamma, 0.1, self.cfg.tau)


def twin_step(twin: Any, batch: tuple[torch.Tensor, ...], gamma: float, alpha: float, tau: float) -> None:
    """The twin networks' update in plain torch on a fixed batch: soft target from the targets,
    MSE on both networks, backward, Adam, Polyak. ``twin`` has ``nets``, ``targets``, ``opt``,
    ``params`` and ``target_params`` (shared with ``atari_overhead.py``)."""
    obs, actions, rewards, next_obs, terminated = batch
    with torch.no_grad():
        next_q = torch.minimum(twin.targets[0](next_obs), twin.targets[1](next_obs))
        y = rewards + gamma * (1.0 - terminated) * alpha * torch.logsumexp(next_q / alpha, dim=-1)
    loss = (F.mse_loss(twin.nets[0](obs).gather(1, actions).squeeze(1), y)
            + F.mse_loss(twin.nets[1](obs).gather(1, actions).squeeze(1), y))
    twin.opt.zero_grad(set_to_none=True)
    loss.backward()
    twin.opt.step()
    with torch.no_grad():
        torch._foreach_lerp_(twin.target_params, twin.params, tau)


def fill(agent: SQNAgent, env: gym.Env, n: int, seed: int) -> list[tuple]:
    """Play ``n`` random steps into the agent's replay; return the transitions for reuse."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    transitions = []
    for _ in range(n):
        a = int(rng.integers(env.action_space.n))
        next_obs, r, term, trunc, _ = env.step(a)
        transitions.append((obs, a, float(r), next_obs, bool(term), bool(trunc)))
        agent.observe(obs, a, r, next_obs, term, trunc)
        obs = env.reset()[0] if term or trunc else next_obs
    return transitions


def summarize(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {k: {"median_us": round(median(v), 2), "p10_us": round(float(np.percentile(v, 10)), 2),
                "p90_us": round(float(np.percentile(v, 90)), 2), "n": len(v)} for k, v in samples.items()}


class TimedStep:
    """The env with the duration of each ``step`` recorded (µs); a plain object rather than a
    gym.Wrapper, so that the loop's timing gains no wrapper layer."""

    def __init__(self, env: gym.Env) -> None:
        self.env = env
        self.step_us: list[float] = []

    def reset(self, **kwargs: Any) -> Any:
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        t0 = time.perf_counter_ns()
        out = self.env.step(action)
        self.step_us.append((time.perf_counter_ns() - t0) / 1e3)
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3_000, help="timed calls per operation (learn: reps / 3)")
    p.add_argument("--act-batch", type=int, default=32, help="batch size for the batched act")
    p.add_argument("--loop-steps", type=int, default=3_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="300 reps, 300 loop steps")
    p.add_argument("--one-step", action="store_true",
                   help="the agent with n_step=1 and munchausen_scale=0: the same target as the bare step "
                        "(the defaults' n-step chain and Munchausen forward pass are work the bare step does not do)")
    a = p.parse_args()
    if a.quick:
        a.reps, a.loop_steps = 300, 300
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    machine = machine_info()  # load and other busy processes at the start

    env = gym.make(ENV_ID)
    cfg = SQNConfig(n_step=1, munchausen_scale=0.0) if a.one_step else SQNConfig()
    agent = SQNAgent(env.observation_space, env.action_space, cfg, device="cpu", seed=a.seed)
    transitions = fill(agent, env, max(cfg.learning_starts, 5_000 if not a.quick else 1_200), a.seed)
    agent.learn()  # every update due on the filled replay: the networks and Adam state of a trained agent
    bare = Bare(agent)  # copies of the agent's networks, targets, temperature and optimizer states
    bare_ftz = Bare(agent)  # the same, stepped with subnormal floats flushed to zero
    obs1 = np.asarray(transitions[7][0], dtype=np.float32)
    obsb = np.stack([t[0] for t in transitions[: a.act_batch]]).astype(np.float32)
    results: dict[str, Any] = {}

    # raw env step (reset when done, untimed) -------------------------------------------------
    env_state = {"obs": env.reset(seed=a.seed)[0], "done": False}
    rng = np.random.default_rng(a.seed)

    def env_step() -> None:
        _, _, term, trunc, _ = env.step(int(rng.integers(2)))
        env_state["done"] = term or trunc

    def env_reset() -> None:
        if env_state["done"]:
            env.reset()
            env_state["done"] = False

    results["env_step"] = summarize(interleave(a.reps, {"env.step": env_step}, before=env_reset))

    # act -------------------------------------------------------------------------------------
    results["act_single"] = summarize(interleave(a.reps, {
        "agent.act": lambda: agent.act(obs1), "bare act": lambda: bare.act(obs1),
        "nets only": lambda: bare.nets_forward(obs1)}))
    results["act_batch"] = summarize(interleave(a.reps, {
        "agent.act": lambda: agent.act(obsb), "bare act": lambda: bare.act(obsb),
        "nets only": lambda: bare.nets_forward(obsb)}))

    # observe ---------------------------------------------------------------------------------
    k = {"i": 0}

    def next_transition() -> tuple:
        k["i"] = (k["i"] + 1) % len(transitions)
        return transitions[k["i"]]

    results["observe"] = summarize(interleave(a.reps, {
        "agent.observe": lambda: agent.observe(*next_transition()),
        "bare observe": lambda: bare.observe(*next_transition())}))

    # learn -----------------------------------------------------------------------------------
    fixed = bare.batch()

    def one_due() -> None:
        if agent.learner.updates_due() == 0:
            agent.env_steps += 1  # agent.learn() then finds exactly one gradient step due

    def flushed(fn: Callable[[], Any]) -> None:
        torch.set_flush_denormal(True)
        try:
            fn()
        finally:
            torch.set_flush_denormal(False)

    learn_reps = max(a.reps // 3, 50)
    results["learn"] = summarize(interleave(learn_reps, {
        "agent.learn": agent.learn, "agent.learner.gradient_step": agent.learner.gradient_step,
        "bare gradient step": bare.gradient_step, "bare, flush denormals": lambda: flushed(bare_ftz.gradient_step),
        "nets only": lambda: bare.nets_only_step(fixed)},
        before=one_due))

    # whole loop ------------------------------------------------------------------------------
    timed = TimedStep(env)
    loop_t = []
    agent.learn()  # nothing pending before the loop starts
    steps = interact(agent, timed, timed.reset(seed=a.seed + 1)[0])
    for _ in range(a.loop_steps):  # one step of sqn_agents.loop.interact: act, env.step, observe, learn, reset
        t0 = time.perf_counter_ns()
        next(steps)
        loop_t.append((time.perf_counter_ns() - t0) / 1e3)
    env_t = timed.step_us
    # Medians throughout: the loop's median step against the parts' medians (a step with an
    # episode reset or a slow outlier would otherwise count against the overhead).
    loop_med, loop_mean = median(loop_t), float(np.mean(loop_t))
    env_med = median(env_t)
    bare_act = results["act_single"]["bare act"]["median_us"]
    bare_grad = results["learn"]["bare gradient step"]["median_us"]
    nets_act = results["act_single"]["nets only"]["median_us"]
    nets_grad = results["learn"]["nets only"]["median_us"]
    bare_observe = results["observe"]["bare observe"]["median_us"]
    outside = loop_med - env_med - bare_act - bare_grad  # one act and one gradient step per env step
    outside_nets_only = loop_med - env_med - nets_act - nets_grad
    agent_extra = sum(results[part][agent_name]["median_us"] - results[part][bare_name]["median_us"]
                      for part, agent_name, bare_name in (("act_single", "agent.act", "bare act"),
                                                          ("observe", "agent.observe", "bare observe"),
                                                          ("learn", "agent.learn", "bare gradient step")))
    results["loop"] = {
        "steps": a.loop_steps, "steps_per_s_from_mean": round(1e6 / loop_mean, 1),
        "per_step_median_us": round(loop_med, 1), "per_step_mean_us": round(loop_mean, 1),
        "env_step_in_loop_median_us": round(env_med, 2),
        "share_env": round(env_med / loop_med, 4),
        "share_bare_networks": round((bare_act + bare_grad) / loop_med, 4),
        "share_outside_env_and_bare_networks": round(outside / loop_med, 4),
        "share_outside_env_and_nets_only": round(outside_nets_only / loop_med, 4),
        "agent_minus_bare_act_observe_learn_us": round(agent_extra, 1),
        "share_agent_minus_bare": round(agent_extra / loop_med, 4),
        "share_bare_observe": round(bare_observe / loop_med, 5),
    }

    def ratio(part: str, num: str, den: str) -> float:
        return round(results[part][num]["median_us"] / results[part][den]["median_us"], 3)

    env_us = results["env_step"]["env.step"]["median_us"]
    ratios = {
        "act_single: agent/bare": ratio("act_single", "agent.act", "bare act"),
        "act_single: agent/nets only": ratio("act_single", "agent.act", "nets only"),
        "act_single: agent/env.step": round(results["act_single"]["agent.act"]["median_us"] / env_us, 2),
        "act_batch: agent/bare": ratio("act_batch", "agent.act", "bare act"),
        "act_batch: agent/nets only": ratio("act_batch", "agent.act", "nets only"),
        "observe: agent/bare": ratio("observe", "agent.observe", "bare observe"),
        "observe: agent/env.step": round(results["observe"]["agent.observe"]["median_us"] / env_us, 2),
        "learn: agent.learn/bare": ratio("learn", "agent.learn", "bare gradient step"),
        "learn: learner.gradient_step/bare": ratio("learn", "agent.learner.gradient_step", "bare gradient step"),
        "learn: agent.learn/nets only": ratio("learn", "agent.learn", "nets only"),
        "learn: agent.learn/env.step": round(results["learn"]["agent.learn"]["median_us"] / env_us, 1),
        "learn: bare/bare with flush denormals": ratio("learn", "bare gradient step", "bare, flush denormals"),
    }

    print(f"{ENV_ID}, SQN defaults, one torch thread; medians of interleaved single calls (µs)")
    for part, rows in results.items():
        if part == "loop":
            continue
        print(f"  {part}")
        for name, s in rows.items():
            print(f"    {name:<24} {s['median_us']:9.2f}   (p10 {s['p10_us']:.2f}, p90 {s['p90_us']:.2f})")
    lp = results["loop"]
    print(f"  loop: {lp['steps_per_s_from_mean']} steps/s, median step {lp['per_step_median_us']} µs; "
          f"env {lp['share_env']:.1%}, "
          f"bare networks {lp['share_bare_networks']:.1%}, outside env and networks "
          f"{lp['share_outside_env_and_bare_networks']:.1%} (vs nets only: {lp['share_outside_env_and_nets_only']:.1%}); "
          f"agent minus bare (act+observe+learn) {lp['share_agent_minus_bare']:.1%}")
    for k_, v in ratios.items():
        print(f"  {k_:<32} {v}")
    result = {"benchmark": "overhead", "quick": a.quick, "one_step": a.one_step, "config": cfg.to_dict(), "env_id": ENV_ID, "act_batch": a.act_batch, "reps": a.reps,
              "learn_reps": learn_reps, "machine": machine, "timings": results, "ratios": ratios}
    print_result(result)
    if not a.quick:
        write_json(RESULTS_DIR / ("overhead_one_step.json" if a.one_step else "overhead.json"), result)


if __name__ == "__main__":
    main()
