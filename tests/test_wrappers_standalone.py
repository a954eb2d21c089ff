"""The wrappers stand alone: no torch, no sqn_agents; ale-py and opencv only when an Atari env is built.
And the examples in their docstrings run as written."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from pathlib import Path

import pytest

import wrappers.atari
import wrappers.life_loss
import wrappers.multidiscrete

ROOT = Path(__file__).resolve().parents[1]

IMPORTED = """
import json, sys
{code}
print(json.dumps({{name: name in sys.modules for name in ("torch", "sqn_agents", "ale_py", "cv2")}}))
"""


def modules_after(code: str) -> dict[str, bool]:
    """Which of torch, sqn_agents, ale_py and cv2 a fresh interpreter has imported after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORTED.format(code=code)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_wrappers_imports_neither_torch_nor_sqn_agents_nor_the_atari_extras():
    assert modules_after("import wrappers") == {"torch": False, "sqn_agents": False, "ale_py": False, "cv2": False}


def test_using_the_wrappers_imports_neither_torch_nor_sqn_agents():
    code = """
import gymnasium as gym, numpy as np
from wrappers import FlattenMultiDiscreteAction, make_atari_env
env = make_atari_env("Breakout")
env.reset(seed=0)
env.step(1)
class Env(gym.Env):
    observation_space = gym.spaces.Discrete(1)
    action_space = gym.spaces.MultiDiscrete([2, 3])
    def reset(self, *, seed=None, options=None):
        return 0, {}
    def step(self, action):
        return 0, 0.0, False, False, {}
flat = FlattenMultiDiscreteAction(Env())
flat.reset(seed=0)
flat.step(5)
"""
    assert modules_after(code) == {"torch": False, "sqn_agents": False, "ale_py": True, "cv2": True}


@pytest.mark.parametrize("module", [wrappers.atari, wrappers.life_loss, wrappers.multidiscrete])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
