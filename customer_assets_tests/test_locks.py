"""The two locks (requirements.lock for Python 3.11+, requirements-py310.lock for 3.10) pin every
dependency pyproject.toml declares, within its range, and `make` installs the one for its interpreter."""

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
LOCKS = ("requirements.lock", "requirements-py310.lock")


def _pins(lock: str) -> dict:
    pins = {}
    for line in (REPO / lock).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{lock}: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_pins_every_declared_dependency_within_its_range(lock):
    pins = _pins(lock)
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} does not pin {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {req.name}=={pins[name]}, outside pyproject.toml's {req}")


def test_make_installs_the_lock_for_its_interpreter():
    expected = "requirements.lock" if sys.version_info >= (3, 11) else "requirements-py310.lock"
    plan = subprocess.run(["make", "-n", "setup", f"PYTHON={sys.executable}", "VENV=/nonexistent/venv"],
                          cwd=REPO, capture_output=True, text=True, check=True).stdout
    installs = [line for line in plan.splitlines() if " -r " in line]
    assert installs and all(line.endswith(f"-r {expected}") for line in installs), plan
