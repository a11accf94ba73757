"""Issue 14, point 9: the hashed lock files (tools/lock.py) match pyproject.toml, are complete
and are what the image and CI's virtualenv install.

``tools/lock.py check`` is offline: pins of pyproject.toml against the lock, a hash on every
entry, and the closure of the dependencies read from this virtualenv's installed metadata
(``make venv`` installs the lock into it)."""

from __future__ import annotations

import pathlib
import re
import shutil

import pytest

import tool_modules

ROOT = pathlib.Path(__file__).resolve().parents[2]


lock = tool_modules.load("lock.py", "lock_tool")


def test_the_locks_are_current_and_complete() -> None:
    assert lock.check(ROOT) == []
    entries = lock.parse_lock((ROOT / lock.IMAGE_LOCK).read_text())
    assert {"aiohttp", "kubernetes-asyncio", "pydantic-core", "yarl"} <= set(entries)
    assert all(
        len(hash_) == 71 and hash_.startswith("sha256:")
        for e in entries.values()
        for hash_ in e.hashes
    )


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of pyproject.toml and the two locks, to spoil."""
    for name in ("pyproject.toml", str(lock.IMAGE_LOCK), str(lock.BUILD_LOCK)):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    assert lock.check(tmp_path) == []
    return tmp_path


def _edit(path: pathlib.Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_changed_pin_in_pyproject_makes_the_lock_stale(tree: pathlib.Path) -> None:
    _edit(tree / "pyproject.toml", '"aiohttp==3.14.5"', '"aiohttp==3.14.6"')
    (problem,) = lock.check(tree)
    assert "pins aiohttp==3.14.6, lock has 3.14.5" in problem
    assert "python tools/lock.py write" in problem


def test_a_new_dependency_makes_the_lock_stale(tree: pathlib.Path) -> None:
    _edit(tree / "pyproject.toml", '"PyYAML==6.0.3",', '"PyYAML==6.0.3",\n  "rich==14.0.0",')
    assert any("pins rich==14.0.0, lock has nothing" in p for p in lock.check(tree))


def test_a_removed_dependency_leaves_unneeded_entries(tree: pathlib.Path) -> None:
    _edit(tree / "pyproject.toml", '  "prometheus-client==0.26.0",\n', "")
    assert lock.check(tree) == [
        f"{lock.IMAGE_LOCK}: prometheus-client is locked but nothing in pyproject.toml needs "
        "it: run `python tools/lock.py write`"
    ]


def test_a_missing_transitive_dependency_is_found(tree: pathlib.Path) -> None:
    path = tree / lock.IMAGE_LOCK
    text = path.read_text()
    entry = re.search(r"^multidict==.*?(?=^\S)", text, re.MULTILINE | re.DOTALL)
    assert entry is not None
    path.write_text(text.replace(entry[0], ""))
    problems = lock.check(tree)
    assert (
        f"{lock.IMAGE_LOCK}: aiohttp needs multidict, which is not locked: "
        "run `python tools/lock.py write`" in problems
    )


def test_an_entry_without_hashes_is_refused(tree: pathlib.Path) -> None:
    path = tree / lock.BUILD_LOCK
    text = path.read_text()
    path.write_text(re.sub(r" \\\n\s+--hash=sha256:[0-9a-f]{64}", "", text))
    assert lock.check(tree) == [
        f"{lock.BUILD_LOCK}: setuptools has no --hash: run `python tools/lock.py write`"
    ]


def test_the_virtualenv_target_installs_the_lock_with_hashes_then_the_project_alone() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = makefile[makefile.index("$(INSTALLED):") :].split("\n\n", 1)[0]
    assert "requirements/image.lock" in target.splitlines()[0], "a new lock reinstalls"
    lines = [line.strip() for line in target.splitlines()[1:]]
    (locked,) = [line for line in lines if "--require-hashes" in line]
    assert "--no-deps" in locked
    assert "-r requirements/image.lock" in locked
    (project,) = [line for line in lines if "-e ." in line and "[dev]" not in line]
    assert "--no-deps" in project
    assert lines.index(locked) < lines.index(project)
