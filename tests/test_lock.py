"""The lock is what runs: pyproject.toml and uv.lock agree, this environment holds exactly the locked
versions, and neither the lock nor the floors in pyproject.toml admit a version with a known fix missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# name -> its locked versions (more than one where the lock forks by Python version, e.g. numpy).
LOCKED: dict[str, set[str]] = {}
for _package in LOCK["package"]:
    LOCKED.setdefault(canonicalize_name(_package["name"]), set()).add(_package["version"])
UV = next(p for p in LOCK["package"] if p["name"] == "uv")

# The last release without a published fix, and the first with it (pyproject.toml names the advisories).
SECURITY_FIXES = {
    "h11": ("0.15.0", "0.16.0"),
    "tornado": ("6.5.7", "6.5.8"),
    "starlette": ("1.3.0", "1.3.1"),
    "python-multipart": ("0.0.26", "0.0.27"),
    "idna": ("3.6", "3.7"),
    "certifi": ("2024.6.2", "2024.7.4"),
    "pillow": ("10.2.0", "10.3.0"),
    "urllib3": ("2.6.2", "2.6.3"),
}
# What is in a virtual environment without being a dependency of genq.
NOT_LOCKED = {"pip", "setuptools", "wheel"}


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed next to this Python: build the environment with `make test`")
    return found


def _all_requirements() -> list[Requirement]:
    groups = PYPROJECT["dependency-groups"]
    dev = [r for group in groups.values() for r in group if isinstance(r, str)]
    return [Requirement(r) for r in [*PYPROJECT["project"]["dependencies"], *dev]]


def _run_uv(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    command = [_uv(), *args, "--offline"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=60)


def test_the_lock_matches_pyproject() -> None:
    """`uv lock --check`: fails when a dependency was added, removed or changed in pyproject.toml
    without `make lock`."""
    done = _run_uv("lock", "--check")
    assert done.returncode == 0, done.stderr


def test_this_environment_holds_what_the_lock_says_for_this_python() -> None:
    done = _run_uv("sync", "--locked", "--check", "--inexact", "--no-install-project")
    assert done.returncode == 0, done.stderr


def test_every_installed_distribution_is_the_locked_version() -> None:
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed.pop("genq")
    different = {
        name: (version, sorted(LOCKED.get(name, ())))
        for name, version in installed.items()
        if name not in NOT_LOCKED and version not in LOCKED.get(name, ())
    }
    assert different == {}, "installed version, locked versions ([]: not in the lock)"


def test_every_requirement_of_genq_is_installed_at_its_locked_version() -> None:
    missing = {}
    for requirement in _all_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing[name] = None
            continue
        if version not in LOCKED[name]:
            missing[name] = version
    assert missing == {}


def test_every_locked_artifact_has_a_hash() -> None:
    unhashed = []
    for package in LOCK["package"]:
        if "registry" not in package["source"]:
            continue  # genq itself
        artifacts = [package["sdist"]] if "sdist" in package else []
        artifacts += package.get("wheels", [])
        unhashed += [package["name"] for artifact in artifacts if not artifact.get("hash")]
    assert unhashed == []


@pytest.mark.parametrize("name, versions", SECURITY_FIXES.items())
def test_neither_the_lock_nor_pyproject_admits_a_version_without_the_fix(
    name: str, versions: tuple[str, str]
) -> None:
    vulnerable, fixed = versions
    assert all(Version(v) >= Version(fixed) for v in LOCKED[name])
    (requirement,) = [r for r in _all_requirements() if canonicalize_name(r.name) == name]
    assert not requirement.specifier.contains(vulnerable, prereleases=True), (
        f"pyproject.toml lets an install without the lock pick {name} {vulnerable}"
    )


def test_the_linters_are_pinned_exactly() -> None:
    pinned = {canonicalize_name(r.name): str(r.specifier) for r in _all_requirements()}
    assert pinned["ruff"].startswith("==") and pinned["mypy"].startswith("==")
    assert pinned["uv"].startswith("==")
    required = PYPROJECT["tool"]["uv"]["required-version"]
    assert required == pinned["uv"], "the uv that writes the lock is the one .ci/uv.txt installs"


def test_the_bootstrap_installs_the_locked_uv_by_hash() -> None:
    text = (ROOT / ".ci" / "uv.txt").read_text()
    assert f"uv=={UV['version']} " in text
    bootstrap_hashes = set(re.findall(r"--hash=(sha256:[0-9a-f]{64})", text))
    locked_hashes = {w["hash"] for w in UV["wheels"]} | {UV["sdist"]["hash"]}
    assert bootstrap_hashes and bootstrap_hashes <= locked_hashes
