"""Every docstring example (doctest) in ``sqn_agents`` and ``wrappers`` runs, so none can go stale.

The modules are discovered with ``pkgutil``, so a new module's examples run without being
listed here. An example that needs an optional extra (ale-py and opencv for the Atari
wrappers) is skipped only when that extra is really not installed; any other failure fails.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import io
import pkgutil
import sys
from types import ModuleType

import pytest

import sqn_agents
import wrappers

PACKAGES = (sqn_agents, wrappers)
# Importing these runs a program (``python -m sqn_agents`` trains): they hold no examples.
NOT_IMPORTABLE = {"sqn_agents.__main__"}
# Top-level modules of the optional extras (pyproject.toml) that examples may import.
OPTIONAL = {"ale_py", "cv2", "moviepy", "pygame"}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def module_names() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            if info.name not in NOT_IMPORTABLE:
                names.append(info.name)
    return names


def missing_optional(error: BaseException | None) -> str | None:
    """The optional extra whose absence caused ``error`` (searched along its cause chain), if any."""
    while error is not None:
        if isinstance(error, ImportError) and error.name:
            root = error.name.partition(".")[0]
            if root in OPTIONAL and importlib.util.find_spec(root) is None:
                return root
        error = error.__cause__ or error.__context__
    return None


class Runner(doctest.DocTestRunner):
    """A runner that remembers which optional extra, if any, an example failed to import."""

    def __init__(self) -> None:
        super().__init__(optionflags=FLAGS | doctest.FAIL_FAST)  # stop a docstring at its first failure
        self.missing: str | None = None

    def report_unexpected_exception(self, out, test, example, exc_info) -> None:
        self.missing = missing_optional(exc_info[1])
        super().report_unexpected_exception(out, test, example, exc_info)


def run_doctests(module: ModuleType) -> tuple[int, list[str], list[str]]:
    """Runs the module's examples: (examples attempted, failure reports, extras that forced a skip)."""
    attempted, failures, skipped = 0, [], []
    for test in doctest.DocTestFinder().find(module, module.__name__):
        if not test.examples:
            continue
        runner, out = Runner(), io.StringIO()
        result = runner.run(test, out=out.write, clear_globs=True)
        attempted += result.attempted
        if result.failed and runner.missing is not None:
            skipped.append(f"{test.name} (needs {runner.missing})")
        elif result.failed:
            failures.append(out.getvalue())
    return attempted, failures, skipped


@pytest.mark.parametrize("name", module_names())
def test_module_doctests_pass(name):
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        if missing_optional(e) is None:
            raise
        pytest.skip(f"{name} needs {missing_optional(e)}, which is not installed")
    attempted, failures, skipped = run_doctests(module)
    assert not failures, "\n".join(failures)
    if skipped:
        pytest.skip(f"{len(skipped)} docstring(s) need an optional extra that is not installed: {', '.join(skipped)}")


def test_modules_with_examples_are_found():
    """The discovery sees the modules known to hold examples (so the test above cannot pass vacuously)."""
    names = module_names()
    for expected in ("sqn_agents.agent", "sqn_agents.replay", "wrappers.atari", "wrappers.multidiscrete"):
        assert expected in names
    assert "sqn_agents.__main__" not in names
    attempted = sum(run_doctests(importlib.import_module(n))[0] for n in ("sqn_agents.replay", "wrappers.multidiscrete"))
    assert attempted > 10


def example_module(doc: str, monkeypatch) -> ModuleType:
    module = ModuleType("example_module")
    module.__doc__ = doc
    monkeypatch.setitem(sys.modules, "example_module", module)
    return module


def test_a_failing_example_is_reported(monkeypatch):
    """The runner itself catches a wrong expected output."""
    attempted, failures, skipped = run_doctests(example_module(">>> 1 + 1\n3\n", monkeypatch))
    assert attempted == 1 and len(failures) == 1 and not skipped
    assert "Expected:\n    3\nGot:\n    2" in failures[0]


def test_an_example_needing_a_missing_extra_is_skipped_not_failed(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "OPTIONAL", OPTIONAL | {"sqn_no_such_extra"})
    doc = ">>> import sqn_no_such_extra\n>>> sqn_no_such_extra.run()\n1\n"
    attempted, failures, skipped = run_doctests(example_module(doc, monkeypatch))
    assert not failures and skipped == ["example_module (needs sqn_no_such_extra)"]


def test_a_missing_optional_extra_is_told_from_a_real_failure(monkeypatch):
    import gymnasium as gym

    error = gym.error.DependencyNotInstalled("ale_py is not installed; the Atari wrappers need ale-py")
    error.__cause__ = ModuleNotFoundError("No module named 'ale_py'", name="ale_py")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    assert missing_optional(error) == "ale_py"
    assert missing_optional(ModuleNotFoundError("No module named 'torchvision'", name="torchvision")) is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: object())
    assert missing_optional(error) is None  # installed: the import failed for another reason, a real failure
