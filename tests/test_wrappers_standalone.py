"""The wrappers stand alone: no torch, no sqn_agents; ale-py and opencv only when an Atari env is built.
And the examples in their docstrings and in docs/wrappers.md run as written."""

from __future__ import annotations

import doctest
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import wrappers.atari
import wrappers.atari_options
import wrappers.life_loss
import wrappers.multidiscrete
import wrappers.validation

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


@pytest.mark.parametrize(
    "module", [wrappers.atari, wrappers.atari_options, wrappers.life_loss, wrappers.multidiscrete, wrappers.validation]
)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def docs_blocks() -> list[str]:
    text = (ROOT / "docs/wrappers.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


# What each docs block prints, in order (the comments next to its print calls say the same).
DOCS_OUTPUT = [
    ["Box(0, 255, (4, 84, 84), uint8) Discrete(4)", "game scores: ["],
    ["Box(0, 255, (2, 84, 84), uint8)", "AtariOptions(noop_max=30, frame_skip=4, screen_size=84, grayscale=True, "
     "fire_reset=True, life_loss='signal', clip_rewards=True, frame_stack=4, repeat_action_probability=0.0, "
     "full_action_space=False, max_num_frames_per_episode=108000)",
     "AtariOptions.frame_stack=0; expected an integer >= 1"],
    ["lives lost: "],
    ["(2, 4, 84, 84)"],
    ["Box(0, 255, (4, 84, 84), uint8)"],
    ["Discrete(6)", "[2 0]", "[[ 1 -1]\n [ 2  1]]", "4", "[0 5]", "[2 0]"],
    ["Discrete(12) (3, 2)"],
    ["Box(0, 255, (4, 84, 84), uint8) Discrete(4)", "game scores: [", "['env_id', 'episode_frame_number', 'frame_number', 'lives']"],
]


def test_every_docs_block_is_checked():
    assert len(docs_blocks()) == len(DOCS_OUTPUT)


@pytest.mark.parametrize("index", range(len(DOCS_OUTPUT)))
def test_docs_examples_run_and_print_what_they_say(index, capsys):
    code = docs_blocks()[index]
    exec(compile(code, f"docs/wrappers.md block {index}", "exec"), {"__name__": "docs_example"})
    out = capsys.readouterr().out
    position = 0
    for expected in DOCS_OUTPUT[index]:
        found = out.find(expected, position)
        assert found >= 0, f"block {index} did not print {expected!r} (after position {position}):\n{out}"
        position = found + len(expected)
