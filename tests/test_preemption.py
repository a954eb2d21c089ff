"""Preempted ``sqn-train`` runs, as a user sees them: the CLI in a subprocess, killed by signals.

SIGKILL after a periodic checkpoint, then ``--resume``: the run ends at its own total and
metrics.csv holds no step twice. SIGTERM mid-run: a checkpoint at the step reached, exit status
143, and ``--resume`` continues from it. A second SIGTERM during that save: the process dies at
once and the previous checkpoint still loads.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sqn_agents import SQNAgent

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--no-progress", "--device", "cpu", "--eval-every", "0", "--log-every", "100",
         "--config.hidden-sizes", "32", "--config.batch-size", "32", "--config.learning-starts", "200"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def start(args: list[str], out: Path, code: str | None = None) -> subprocess.Popen:
    """``python -m sqn_agents ARGS`` (or ``python -c CODE ARGS``), its output in ``out``.{stdout,stderr}."""
    cmd = [sys.executable, "-m", "sqn_agents"] if code is None else [sys.executable, "-c", code]
    return subprocess.Popen([*cmd, *args], cwd=ROOT, env=ENV, stdout=open(f"{out}.stdout", "w"),
                            stderr=open(f"{out}.stderr", "w"))


def learn_steps(run: Path) -> list[int]:
    """env_step of every learner row of the run's metrics.csv so far."""
    path = run / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:  # (read while the run writes it: skip a header or row not yet whole)
        return [int(r["env_step"]) for r in csv.DictReader(f)
                if r.get("kind") == "learn" and (r.get("env_step") or "").isdigit()]


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended early with status {proc.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def checkpoint_step(run: Path) -> int:
    return SQNAgent.load(run / "checkpoint", device="cpu").env_steps


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sigkill_after_a_periodic_checkpoint_then_resume_reaches_the_runs_own_total(tmp_path):
    run = tmp_path / "run"
    proc = start(["--total-steps", "2500", "--checkpoint-every", "1000", "--output-dir", str(run), *SMALL],
                 tmp_path / "first")
    wait_for(lambda: any(s >= 1300 for s in learn_steps(run)), proc)  # past the checkpoint at 1000
    proc.kill()
    proc.wait()
    assert checkpoint_step(run) == 1000
    assert max(learn_steps(run)) > 1000  # rows written after the checkpoint, which the resume must drop

    resumed = subprocess.run([sys.executable, "-m", "sqn_agents", "--resume", str(run)], cwd=ROOT, env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "total_steps=2500" in resumed.stdout  # the run's own total, not the default 50,000
    assert checkpoint_step(run) == 2500
    steps = [int(r["env_step"]) for r in rows(run) if r["kind"] == "learn"]
    assert steps == sorted(set(steps)), "metrics.csv repeats or goes back in env_step"
    assert steps == list(range(200, 2501, 100))  # the same rows as a run that never stopped
    train_steps = [int(r["env_step"]) for r in rows(run) if r["kind"] == "train"]
    assert train_steps == sorted(train_steps)
    walls = [float(r["wall_time"]) for r in rows(run)]
    assert walls == sorted(walls)  # the resumed part's wall clock continues the first part's


def test_sigterm_mid_run_checkpoints_the_step_reached_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    proc = start(["--total-steps", "2000", "--output-dir", str(run), *SMALL], tmp_path / "first")
    wait_for(lambda: any(s >= 600 for s in learn_steps(run)), proc)  # no periodic checkpoint before this
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    out = (tmp_path / "first.stdout").read_text()
    reached = checkpoint_step(run)
    assert 600 <= reached < 2000
    assert f"Stopped by SIGTERM at step {reached}" in out and f"sqn-train --resume {run}" in out
    assert "SIGTERM received" in (tmp_path / "first.stderr").read_text()
    assert max(learn_steps(run)) <= reached  # flushed, and nothing past the checkpoint

    resumed = subprocess.run([sys.executable, "-m", "sqn_agents", "--resume", str(run), "--log-every", "200"],
                             cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "log_every 100 -> 200" in resumed.stdout  # an explicit flag replaces the saved one, and says so
    assert checkpoint_step(run) == 2000
    steps = learn_steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == 2000
    assert all(b - a == 200 for a, b in zip(steps, steps[1:], strict=False) if a > reached)


# Makes every fsync of the run slow (0.5 s), so that a second signal lands inside a save.
SLOW_SAVES = """
import os, sys, time
fsync = os.fsync
def slow_fsync(fd):
    time.sleep(0.5)
    fsync(fd)
os.fsync = slow_fsync
from sqn_agents.train import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_second_sigterm_during_the_save_exits_at_once_and_leaves_the_previous_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = start(["--total-steps", "50000", "--checkpoint-every", "500", "--output-dir", str(run), *SMALL],
                 tmp_path / "first", code=SLOW_SAVES)
    wait_for(lambda: any(s >= 700 for s in learn_steps(run)), proc)  # past the periodic checkpoint at 500
    proc.send_signal(signal.SIGTERM)
    stderr = tmp_path / "first.stderr"
    wait_for(lambda: "SIGTERM received" in stderr.read_text(), proc, timeout=30)
    time.sleep(0.2)  # the final save has begun and sleeps in its first fsync
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM  # killed by the second signal, not a clean exit
    assert "Stopped by" not in (tmp_path / "first.stdout").read_text()
    assert checkpoint_step(run) in (500, 1000)  # a whole periodic checkpoint, loadable


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_preemption_records_the_first_signal_and_restores_the_handlers(signum):
    from sqn_agents.train import Preemption

    before = signal.getsignal(signum)
    with Preemption() as preemption:
        os.kill(os.getpid(), signum)
        time.sleep(0.01)  # the handler runs at the next bytecode boundary
        assert preemption.signum == signum and preemption.name == signal.Signals(signum).name
    assert signal.getsignal(signum) is before
