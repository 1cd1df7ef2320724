"""Shared fixtures for the Python side (containers/, examples/).

Run from the repository root:  /usr/bin/python3 -m pytest -q test/python
"""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROCESS_FOV = os.path.join(REPO, "containers", "process-fov", "process_fov.py")
MERGE_RESULTS = os.path.join(REPO, "containers", "merge-results", "merge_results.py")
NUMPY_RECIPE = os.path.join(REPO, "examples", "recipes", "iss_numpy.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

for _p in (os.path.join(REPO, "containers", "common"),
           os.path.join(REPO, "containers", "process-fov"),
           os.path.join(REPO, "containers", "merge-results"),
           os.path.join(REPO, "examples", "synthetic-iss"),
           os.path.join(REPO, "examples", "recipes"),
           os.path.join(REPO, "test", "fixtures", "spacetx")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

RUN_ID = "261125-k3f9"

# variables the scripts read (and those of the previous contract, which they name when they
# see them): never inherit them from the developer's shell
SCRIPT_VARS = ("STARFISH_RUN_ID", "STARFISH_EXPERIMENT", "STARFISH_RECIPE", "STARFISH_FOVS",
               "STARFISH_FOV_OUTPUT", "STARFISH_RESULTS_OUTPUT", "STARFISH_FOVS_AT", "AWS_BATCH_JOB_ARRAY_INDEX",
               "STARFISH_OUTPUT", "STARFISH_FOV_OFFSET", "STARFISH_FOV_LIST", "STARFISH_EXPECTED_FOVS")


class Result(object):
    def __init__(self, proc):
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        self.last_line = lines[-1] if lines else ""

    def __repr__(self):
        return "exit %s\n--- stdout\n%s\n--- stderr\n%s" % (self.code, self.stdout, self.stderr)


def run_script(script, **env_vars):
    env = {k: v for k, v in os.environ.items() if k not in SCRIPT_VARS}
    env.update({k: str(v) for k, v in env_vars.items() if v is not None})
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run([PYTHON, script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120, cwd=REPO)
    return Result(proc)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A 4-FOV synthetic ISS experiment (generated once per test session)."""
    import generate
    out = tmp_path_factory.mktemp("synthetic-iss")
    exp = generate.generate(str(out), fovs=4, seed=0)
    return exp


@pytest.fixture
def synthetic_copy(synthetic, tmp_path):
    """A private copy of the synthetic experiment that a test may damage."""
    dst = tmp_path / "experiment"
    shutil.copytree(os.path.dirname(synthetic), str(dst))
    return str(dst / "experiment.json")
