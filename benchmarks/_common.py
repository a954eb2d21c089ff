"""Helpers shared by the benchmark scripts: machine description, RESULT line, evaluation protocol.

Not part of the package: the scripts import it as a sibling module (``python benchmarks/x.py``
puts ``benchmarks/`` first on ``sys.path``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
# Import sqn_agents and wrappers from this checkout (an editable install made before wrappers/ had an
# __init__.py maps `wrappers` to a namespace package without make_atari_env).
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))


# ---------------------------------------------------------------------- machine
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def other_processes(min_cpu: float = 5.0) -> list[str]:
    """Other processes using CPU right now (``ps``), as 'pcpu% command' strings, busiest first."""
    try:
        out = subprocess.run(["ps", "-eo", "pid=,pcpu=,args="], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or int(parts[0]) in (os.getpid(), os.getppid()):
            continue
        cpu = float(parts[1])
        if cpu >= min_cpu and not parts[2].startswith("ps "):
            rows.append((cpu, f"{cpu:.0f}% {parts[2][:90]}"))
    return [r for _, r in sorted(rows, reverse=True)]


def machine_info() -> dict[str, Any]:
    """CPU (first 20 lines of ``lscpu``, summarised), load, other busy processes, and package versions."""
    import torch

    lscpu: list[str] = []
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines()[:20]
    except (OSError, subprocess.SubprocessError):
        pass
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lscpu)}
    return {
        "cpu": fields.get("Model name", platform.processor() or platform.machine()),
        "cpus": os.cpu_count(),
        "hypervisor": fields.get("Hypervisor vendor"),
        "lscpu_head": lscpu,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "other_busy_processes": other_processes(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gymnasium": _version("gymnasium"),
        "numpy": _version("numpy"),
        "stable_baselines3": _version("stable_baselines3"),
        "tianshou": _version("tianshou"),
        "minatar": _version("MinAtar"),
        "ale_py": _version("ale-py"),
    }


def print_result(result: dict[str, Any]) -> None:
    """The machine-readable last line of every benchmark (adds ``loadavg_at_end`` to ``result``)."""
    result.setdefault("loadavg_at_end", [round(x, 2) for x in os.getloadavg()])
    print("RESULT " + json.dumps(result, default=_json_default), flush=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---------------------------------------------------------------------- statistics
def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def eval_auc(steps: Sequence[float], means: Sequence[float]) -> float:
    """Mean greedy evaluation return over the run: area under the evaluation curve / last step.

    The same definition as ``benchmarks/cartpole_seeds.py``: the curve starts at step 0 with
    the first evaluation's value and is integrated with the trapezoid rule.
    """
    if len(steps) == 0:
        return float("nan")
    s = np.array([0.0, *steps], dtype=float)
    m = np.array([means[0], *means], dtype=float)
    return float(np.trapezoid(m, s) / s[-1])


def steps_to(steps: Sequence[int], means: Sequence[float], threshold: float) -> int | None:
    """First evaluation step whose mean return is at least ``threshold`` (None if never)."""
    for s, m in zip(steps, means, strict=True):
        if m >= threshold:
            return int(s)
    return None


# ---------------------------------------------------------------------- evaluation
# Every script evaluates with sqn_agents.loop's protocol (episode i reset with seed + i, Atari games
# played whole): SQN through ``loop.evaluate`` (directly or in sqn-train), a peer through
# ``loop.play_episodes`` with its greedy policy, so both sides play the same evaluation episodes.


def sb3_eval_callback(eval_env: Any, eval_every: int, episodes: int, seed: int, total_steps: int):
    """An SB3 callback that evaluates the greedy policy every ``eval_every`` env steps up to ``total_steps``.

    Records ``(step, mean, std)`` in ``callback.evals``: at every multiple of ``eval_every`` and
    once at ``total_steps``, never past it (SB3 finishes its last rollout of ``train_freq``
    steps, so a run can go a little past ``total_steps``). Greedy means
    ``model.predict(obs, deterministic=True)``: the argmax of the Q network, no epsilon.
    """
    from stable_baselines3.common.callbacks import BaseCallback

    from sqn_agents.loop import play_episodes

    class GreedyEval(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.evals: list[tuple[int, float, float]] = []

        def _on_step(self) -> bool:
            step = self.num_timesteps
            if step > total_steps or not (step % eval_every == 0 or step == total_steps):
                return True

            def policy(obs: Any) -> Any:
                return self.model.predict(obs, deterministic=True)[0]

            rets = play_episodes(policy, eval_env, episodes, seed)
            self.evals.append((step, float(np.mean(rets)), float(np.std(rets))))
            return True

    return GreedyEval()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically: a run stopped mid-write leaves the old file (or none), never half
    of one, because resumable sweeps treat an existing result file as a finished run."""
    from sqn_agents.checkpoint import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=1, default=_json_default) + "\n")
