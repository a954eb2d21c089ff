"""Test helpers: a full snapshot of an agent's state, to prove a call changed nothing or a load restored everything.

Imported by the checkpoint, resume and bad-input tests (``tests/`` is on ``sys.path`` under pytest).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from sqn_agents import SQNAgent
from sqn_agents.checkpoint import MANIFEST, _manifest_digest


def _copy(value: Any) -> Any:
    """A deep copy that owns its tensors and arrays (a state_dict holds the live ones)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return np.array(value, copy=True)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return copy.deepcopy(value)


def snapshot(agent: SQNAgent) -> dict[str, Any]:
    """Everything an observe/learn/load could change: the parts' full ``state_dict()``s (networks, temperature,
    optimizers, counters, replay and its RNG, the sampling generator, the pending autoreset), one flat dict."""
    state = agent.state_dict(include_replay=True)
    return {**_copy(state["learner"]), **_copy(state["actor"]), **_copy(state["intake"]), "replay_len": len(agent.replay)}


def assert_same_state(a: dict[str, Any], b: dict[str, Any], path: str = "", rtol: float = 0.0) -> None:
    """Exact equality of two snapshots (tensors bit for bit), naming the first difference; with ``rtol``,
    floating-point tensors need only agree to that relative tolerance (plus an absolute ``rtol / 100``)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for k in a:
            assert_same_state(a[k], b[k], f"{path}.{k}", rtol)
    elif isinstance(a, torch.Tensor) and rtol and a.is_floating_point():
        assert a.dtype == b.dtype and a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=rtol / 100), \
            f"{path} differs by more than rtol {rtol}"
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), f"{path} differs"
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), f"{path} differs"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{path}[{i}]", rtol)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# ---------------------------------------------------------------------- editing checkpoints
def read_manifest(directory: Path) -> dict[str, Any]:
    return json.loads((directory / MANIFEST).read_text())


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write a manifest with a valid self-digest: an edit that passes the integrity checks."""
    manifest = dict(manifest)
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    (directory / MANIFEST).write_text(json.dumps(manifest))


def group_path(directory: Path, group: str) -> Path:
    return directory / read_manifest(directory)["files"][group]["file"]


def read_group(directory: Path, group: str) -> dict[str, torch.Tensor]:
    return safetensors.torch.load(group_path(directory, group).read_bytes())


def replace_file_rehashed(directory: Path, group: str, data: bytes) -> None:
    """Overwrite a group's file and fix its hash, size and the manifest digest (a forged checkpoint)."""
    group_path(directory, group).write_bytes(data)
    manifest = read_manifest(directory)
    manifest["files"][group].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    write_manifest(directory, manifest)


def replace_group_rehashed(directory: Path, group: str, tensors: dict[str, torch.Tensor]) -> None:
    replace_file_rehashed(directory, group, safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()}))


def assert_save_load_continues_exactly(make_env, config, total: int, save_at: int, path: Path) -> SQNAgent:
    """Train ``total`` steps straight, and ``save_at`` steps, save with the replay, load, train the rest:
    the actions and learn() results must be the same, and so must the final states. Returns the loaded agent."""

    def run(steps, log, agent=None, env=None, obs=None):
        if agent is None:
            env = make_env()
            agent = SQNAgent(env.observation_space, env.action_space, config, seed=1, device="cpu")
            obs, _ = env.reset(seed=1)
        for _ in range(steps):
            action = agent.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            agent.observe(obs, action, reward, next_obs, terminated, truncated)
            log.append((action, agent.learn()))
            obs = next_obs if not (terminated or truncated) else env.reset()[0]
        return agent, env, obs

    straight: list = []
    final, _, _ = run(total, straight)
    resumed: list = []
    agent, env, obs = run(save_at, resumed)
    agent.save(path, include_replay=True)
    loaded = SQNAgent.load(path, device="cpu")
    assert type(loaded.replay) is type(final.replay)
    assert_same_state(snapshot(agent), snapshot(loaded))
    run(total - save_at, resumed, loaded, env, obs)
    assert resumed == straight
    assert_same_state(snapshot(final), snapshot(loaded))
    return loaded
