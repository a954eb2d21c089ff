"""Checkpoints without pickle: tensors in safetensors files, everything else in one JSON manifest.

A checkpoint is a directory::

    agent/
      checkpoint.json                  # format version, config, spaces, counters, RNG, file hashes
      model-<token>.safetensors        # online and target networks, log(alpha), Box bounds
      state-<token>.safetensors        # optimizer moments, torch RNG state
      replay-<token>.safetensors       # optional: the replay buffer, for exact resume

Why this layout: loading reads JSON and safetensors only, so a checkpoint from an untrusted
source cannot run code (``torch.load`` unpickles unless ``weights_only=True``, and even
then the rest of the agent's state would need pickle). Saves are atomic: the tensor files
of a new save get fresh names and are fsynced first, then ``checkpoint.json`` is replaced
by ``os.replace`` (atomic on POSIX), which is the commit point; only then are the previous
save's files deleted. A crash or SIGKILL at any moment leaves a manifest that names
complete files. Each file's SHA-256 is in the manifest, so truncated or altered files are
refused with a message instead of a stack trace from deep inside a parser.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors.torch
import torch

from sqn_agents.config import SQNConfig
from sqn_agents.spaces import describe_space, space_from_description

if TYPE_CHECKING:
    from sqn_agents.agent import SQNAgent

FORMAT = "sqn-agents-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, of another version or for other spaces."""


# ---------------------------------------------------------------------- files
def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_checkpoint(directory: str | Path, manifest: dict[str, Any], groups: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write tensor groups and a manifest into ``directory`` atomically (see the module docstring)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    files = {}
    for group, tensors in groups.items():
        data = safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        name = f"{group}-{token}.safetensors"
        _write_durably(directory / name, data)
        files[group] = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "files": files}
    tmp = directory / f".{MANIFEST}.tmp-{token}"
    _write_durably(tmp, json.dumps(full, indent=2).encode())
    os.replace(tmp, directory / MANIFEST)  # the commit point
    _fsync_dir(directory)
    keep = {f["file"] for f in files.values()} | {MANIFEST}
    for old in directory.iterdir():  # files of earlier saves, and leftovers of interrupted ones
        if old.name not in keep and (old.suffix == ".safetensors" or old.name.startswith(f".{MANIFEST}.tmp-")):
            old.unlink(missing_ok=True)
    return directory


def _refuse_single_file(path: Path) -> None:
    head = path.read_bytes()[:4]
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise CheckpointError(
            f"{path} is a single file that looks like a pickle or torch.save archive; sqn-agents never "
            "unpickles (it could run arbitrary code). A checkpoint is a directory written by SQNAgent.save()."
        )
    raise CheckpointError(f"{path} is a file; an sqn-agents checkpoint is a directory written by SQNAgent.save()")


def read_checkpoint(directory: str | Path, skip: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Read and verify a checkpoint: its manifest and every tensor group (except those in ``skip``)."""
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"no checkpoint at {directory}: the path does not exist")
    if directory.is_file():
        _refuse_single_file(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"no checkpoint at {directory}: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{manifest_path} is not valid JSON ({e}); the file is corrupt") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path} is not an sqn-agents checkpoint manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{manifest_path} has format_version {manifest.get('format_version')!r}; "
            f"this version of sqn-agents reads format_version {FORMAT_VERSION}"
        )
    groups = {}
    for group, entry in manifest.get("files", {}).items():
        if group in skip:
            continue
        path = directory / entry["file"]
        if not path.is_file():
            raise CheckpointError(f"{path} is missing; the checkpoint at {directory} is incomplete")
        data = path.read_bytes()
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CheckpointError(
                f"{path} is truncated or corrupt: {len(data)} bytes, manifest says {entry['bytes']}, "
                "and its SHA-256 does not match"
            )
        try:
            groups[group] = safetensors.torch.load(data)
        except Exception as e:  # the hash matched, so this is a file written by something else
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from None
    return manifest, groups


# ---------------------------------------------------------------------- the agent
def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    state = optimizer.state_dict()
    tensors = {
        f"{prefix}.{pid}.{key}": torch.as_tensor(value)
        for pid, entries in state["state"].items()
        for key, value in entries.items()
    }
    return tensors, state["param_groups"]


def _load_optimizer(optimizer: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], groups: list) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            pid, key = name[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_agent(agent: SQNAgent, path: str | Path, include_replay: bool = False) -> Path:
    """Pack an agent into tensor groups and a manifest, and write them atomically."""
    model = {f"q_nets.{k}": v for k, v in agent.q_nets.state_dict().items()}
    model.update({f"target_nets.{k}": v for k, v in agent.target_nets.state_dict().items()})
    model["log_alpha"] = agent.log_alpha
    model["observation_space.low"] = torch.from_numpy(np.asarray(agent.observation_space.low))
    model["observation_space.high"] = torch.from_numpy(np.asarray(agent.observation_space.high))
    q_opt, q_groups = _optimizer_tensors("q_optimizer", agent.q_optimizer)
    a_opt, a_groups = _optimizer_tensors("alpha_optimizer", agent.alpha_optimizer)
    state = {**q_opt, **a_opt, "torch_generator": agent.generator.get_state()}
    groups = {"model": model, "state": state}
    if include_replay:
        groups["replay"] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in agent.replay.state_dict().items()}
    manifest = {
        "config": agent.config.to_dict(),
        "observation_space": describe_space(agent.observation_space),
        "action_space": describe_space(agent.action_space),
        "network": "builtin" if agent.network_factory is None else "custom",
        "autoreset_mode": agent.autoreset_mode,
        "counters": {
            "env_steps": agent.env_steps,
            "updates": agent.updates,
            "gradient_steps": agent.gradient_steps,
            "skipped_updates": agent.skipped_updates,
        },
        "prev_done": None if agent._prev_done is None else agent._prev_done.tolist(),
        "replay_rng": agent.replay.rng.bit_generator.state,
        "optimizer_param_groups": {"q_optimizer": q_groups, "alpha_optimizer": a_groups},
        "torch_version": torch.__version__,
    }
    return write_checkpoint(path, manifest, groups)


def _check_tensors(where: str, module_state: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(module_state) - set(saved))
    if missing:
        raise CheckpointError(f"{where} lacks tensors {missing[:5]}; was it saved with a different network?")
    for name, expected in module_state.items():
        if saved[name].shape != expected.shape:
            raise CheckpointError(
                f"{where} tensor '{name}' has shape {tuple(saved[name].shape)}, the network expects "
                f"{tuple(expected.shape)}; was it saved with a different network or config?"
            )


def load_agent(
    path: str | Path,
    device: str | torch.device = "auto",
    network_factory: Any = None,
    observation_space: Any = None,
    action_space: Any = None,
) -> SQNAgent:
    """Rebuild an agent from a checkpoint directory, checking everything it reads."""
    from sqn_agents.agent import SQNAgent

    manifest, groups = read_checkpoint(path)
    model, state = groups.get("model"), groups.get("state")
    if model is None or state is None:
        raise CheckpointError(f"checkpoint at {path} lacks its model or state file entry")
    try:
        config = SQNConfig.from_dict(manifest["config"])
        obs_space = space_from_description(
            manifest["observation_space"], model["observation_space.low"].numpy(), model["observation_space.high"].numpy()
        )
        act_space = space_from_description(manifest["action_space"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint at {path} has an invalid config or space description: {e}") from None
    for given, saved, name in ((observation_space, obs_space, "observation"), (action_space, act_space, "action")):
        if given is not None and describe_space(given) != describe_space(saved):
            raise CheckpointError(
                f"checkpoint at {path} was made for {name} space {describe_space(saved)}, "
                f"but the env has {describe_space(given)}"
            )
    if manifest.get("network") == "custom" and network_factory is None:
        raise CheckpointError(
            f"checkpoint at {path} was saved from an agent with a custom network_factory; pass the same factory to load()"
        )

    agent = SQNAgent(obs_space, act_space, config, device=device, network_factory=network_factory,
                     autoreset_mode=manifest.get("autoreset_mode", "next_step"))
    for prefix, module in (("q_nets", agent.q_nets), ("target_nets", agent.target_nets)):
        module_state = module.state_dict()
        saved = {k[len(prefix) + 1 :]: v for k, v in model.items() if k.startswith(prefix + ".")}
        _check_tensors(f"{path} ({prefix})", module_state, saved)
        module.load_state_dict(saved)
    if model["log_alpha"].shape != agent.log_alpha.shape:
        raise CheckpointError(f"{path}: log_alpha has shape {tuple(model['log_alpha'].shape)}, expected {tuple(agent.log_alpha.shape)}")
    with torch.no_grad():
        agent.log_alpha.copy_(model["log_alpha"])
    try:
        param_groups = manifest["optimizer_param_groups"]
        _load_optimizer(agent.q_optimizer, "q_optimizer", state, param_groups["q_optimizer"])
        _load_optimizer(agent.alpha_optimizer, "alpha_optimizer", state, param_groups["alpha_optimizer"])
        agent.generator.set_state(state["torch_generator"])
        counters = manifest["counters"]
        agent.env_steps, agent.updates = int(counters["env_steps"]), int(counters["updates"])
        agent.gradient_steps, agent.skipped_updates = int(counters["gradient_steps"]), int(counters["skipped_updates"])
        if manifest.get("prev_done") is not None:
            agent._prev_done = np.array(manifest["prev_done"], dtype=bool)
        if "replay" in groups:
            agent.replay.load_state_dict({k: v.numpy() for k, v in groups["replay"].items()})
        agent.replay.rng.bit_generator.state = manifest["replay_rng"]
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint at {path} has inconsistent optimizer, RNG or replay state: {e}") from None
    return agent
