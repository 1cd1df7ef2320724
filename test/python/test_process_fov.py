"""process-fov: output table, FOV selection, and one-line failure reasons (as subprocesses); the
recipe conventions and result types (with the starfish stand-in in test/python/standin)."""
import collections
import csv
import io
import json
import os
import re
import sys
import types

import numpy as np
import pytest

from conftest import NUMPY_RECIPE, PROCESS_FOV, RUN_ID, run_script

import process_fov as pf
import starfish_io as sio

STANDIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin")
SIGNATURES = ("process_fov(fov_index: int, experiment_url: str) (starfish's WDL workflow, starfish-analysis) "
              "or process_fov(fov: FieldOfView, codebook: Codebook) (starfish's AWS tutorial)")

FAKE_RECIPE = '''
def process_fov(fov_index, experiment_url):
    # three spots whose target names the FOV, so tests can see which FOV ran
    return [
        {"x": 10.123, "y": 20.456, "target": "GENE_%d" % fov_index, "quality": 0.98765},
        {"x": 30, "y": 40, "z": 2, "target": "ACTB", "quality": 0.5},
        {"x": 1.005, "y": 2.0, "target": "VIM"},
    ]
'''


def write(path, text):
    with open(str(path), "w") as fh:
        fh.write(text)
    return str(path)


@pytest.fixture
def fake_recipe(tmp_path):
    return write(tmp_path / "fake_recipe.py", FAKE_RECIPE)


def env_for(exp, recipe, out, **extra):
    """A FOV job's environment: the synthetic experiment's FOVs 0-3, writing to ``out``."""
    env = {"STARFISH_RUN_ID": RUN_ID, "STARFISH_EXPERIMENT": exp, "STARFISH_RECIPE": recipe,
           "STARFISH_FOVS": "0-3", "STARFISH_FOV_OUTPUT": out}
    env.update(extra)
    return env


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def error_record(out, fov):
    with open(os.path.join(out, "fov_%03d.error.json" % fov)) as fh:
        return json.load(fh)


# ---------------------------------------------------------------------------------------
# success

def test_numpy_recipe_writes_documented_csv(synthetic, tmp_path):
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic, NUMPY_RECIPE, out, AWS_BATCH_JOB_ARRAY_INDEX="1"))
    assert r.code == 0, r
    rows = read_csv(os.path.join(out, "fov_001.csv"))
    assert rows[0][:6] == ["fov", "x", "y", "z", "target", "quality"]  # then whatever else the recipe gives
    assert len(rows) - 1 >= 76  # 80 spots in the ground truth of this FOV
    for row in rows[1:]:
        assert len(row) == len(rows[0]), row
        assert row[0] == "1"
        assert re.match(r"^-?\d+\.\d\d$", row[1]) and re.match(r"^-?\d+\.\d\d$", row[2]), row
        assert re.match(r"^-?\d+$", row[3]), row
        assert row[4]
        assert re.match(r"^[01]\.\d\d\d$", row[5]) and 0 <= float(row[5]) <= 1, row
    assert not os.path.exists(os.path.join(out, "fov_001.error.json"))
    # no temp files left behind by the atomic write
    assert sorted(os.listdir(out)) == ["fov_001.csv", "fov_001.metrics.json"]


def test_plain_job_defaults_to_fov_0_and_formats_values(synthetic, fake_recipe, tmp_path):
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic, fake_recipe, out))
    assert r.code == 0, r
    rows = read_csv(os.path.join(out, "fov_000.csv"))
    assert rows == [["fov", "x", "y", "z", "target", "quality"],
                    ["0", "10.12", "20.46", "0", "GENE_0", "0.988"],
                    ["0", "30.00", "40.00", "2", "ACTB", "0.500"],
                    ["0", "1.00", "2.00", "0", "VIM", "1.000"]]


def test_array_child_takes_the_ith_fov_of_the_ranges(synthetic, fake_recipe, tmp_path):
    out = str(tmp_path / "fovs")
    # ascending order whatever the order of the text: child 0 -> 0, 1 -> 2, 2 -> 3
    for index, expected in (("2", 3), ("0", 0), ("1", 2)):
        r = run_script(PROCESS_FOV, **env_for(synthetic, fake_recipe, out, AWS_BATCH_JOB_ARRAY_INDEX=index,
                                              STARFISH_FOVS="2-3,0"))
        assert r.code == 0, r
        rows = read_csv(os.path.join(out, "fov_%03d.csv" % expected))
        assert rows[1][0] == str(expected) and rows[1][4] == "GENE_%d" % expected
        assert "process-fov: run %s: FOV %d (fov_%03d)" % (RUN_ID, expected, expected) in r.stdout
    assert sorted(os.listdir(out)) == ["fov_000.csv", "fov_000.metrics.json", "fov_002.csv", "fov_002.metrics.json",
                                       "fov_003.csv", "fov_003.metrics.json"]


def test_a_plain_job_is_child_0_of_its_single_fov(synthetic, fake_recipe, tmp_path):
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic, fake_recipe, out, STARFISH_FOVS="3"))
    assert r.code == 0, r
    assert sorted(os.listdir(out)) == ["fov_003.csv", "fov_003.metrics.json"]
    assert read_csv(os.path.join(out, "fov_003.csv"))[1][4] == "GENE_3"


def test_writes_only_under_the_fov_output(synthetic, fake_recipe, tmp_path):
    """The job is given its output location; it builds no run prefix or fovs/ folder of its own."""
    out = str(tmp_path / "outputs" / RUN_ID / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic, fake_recipe, out + "/", AWS_BATCH_JOB_ARRAY_INDEX="1"))
    assert r.code == 0, r
    written = sorted(os.path.relpath(os.path.join(d, f), str(tmp_path))
                     for d, _, files in os.walk(str(tmp_path)) for f in files)
    assert written == ["fake_recipe.py", os.path.join("outputs", RUN_ID, "fovs", "fov_001.csv"),
                       os.path.join("outputs", RUN_ID, "fovs", "fov_001.metrics.json")]


@pytest.mark.parametrize("index, fov", [(0, 1), (1, 2), (2, 3), (3, 7), (4, 9), (5, 10), (7, 12)])
def test_resolve_chunk_indexes_into_the_ranges(index, fov):
    env = {"STARFISH_FOVS": "1-3,7,9-12", "AWS_BATCH_JOB_ARRAY_INDEX": str(index)}
    assert pf.resolve_chunk(env) == [fov]


def test_resolve_chunk_on_a_huge_selection_never_expands_it():
    env = {"STARFISH_FOVS": "0-999999,1000000", "AWS_BATCH_JOB_ARRAY_INDEX": "999999"}
    assert pf.resolve_chunk(env) == [999999]
    env["AWS_BATCH_JOB_ARRAY_INDEX"] = "1000000"
    assert pf.resolve_chunk(env) == [1000000]
    assert sio.parse_fov_ranges(env["STARFISH_FOVS"]).ranges == ((0, 1000000),)
    assert pf.resolve_chunk({"STARFISH_FOVS": "5"}) == [5]  # a plain job has no array index


def test_success_clears_previous_error_record(synthetic, fake_recipe, tmp_path):
    out = str(tmp_path / "fovs")
    os.makedirs(out)
    write(os.path.join(out, "fov_002.error.json"), '{"fov": 2, "reason": "old failure"}')
    r = run_script(PROCESS_FOV, **env_for(synthetic, fake_recipe, out, AWS_BATCH_JOB_ARRAY_INDEX="2"))
    assert r.code == 0, r
    assert sorted(os.listdir(out)) == ["fov_002.csv", "fov_002.metrics.json"]


def test_an_attempt_killed_midway_leaves_no_stale_reason(synthetic, tmp_path):
    """A retry killed before it can write its own reason (OOM, Spot) must not show the old one."""
    out = str(tmp_path / "fovs")
    os.makedirs(out)
    write(os.path.join(out, "fov_002.error.json"), '{"fov": 2, "reason": "old failure"}')
    killed = str(tmp_path / "killed.py")
    write(killed, "import os, signal\n\ndef process_fov(fov_index, experiment_url):\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    r = run_script(PROCESS_FOV, **env_for(synthetic, killed, out, AWS_BATCH_JOB_ARRAY_INDEX="2"))
    assert r.code != 0, r
    assert os.listdir(out) == []


def test_fov_names_use_at_least_three_digits():
    import starfish_io
    assert starfish_io.fov_name(17) == "fov_017"
    assert starfish_io.fov_name(0) == "fov_000"
    assert starfish_io.fov_name(1234) == "fov_1234"


# ---------------------------------------------------------------------------------------
# failures: one readable last line, non-zero exit, error record

def test_missing_tile(synthetic_copy, tmp_path):
    d = os.path.dirname(synthetic_copy)
    tile = os.path.join(d, "primary-fov_003-r1-c2-z0.tiff")
    os.remove(tile)
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic_copy, NUMPY_RECIPE, out, AWS_BATCH_JOB_ARRAY_INDEX="3"))
    assert r.code == 1, r
    # the file and the field that name it, before the recipe runs
    where = " (tiles[6].file in %s)" % os.path.join(d, "primary-fov_003.json")
    assert r.last_line == "process-fov: FOV 3: tile not found: %s%s" % (tile, where)
    assert error_record(out, 3) == {"fov": 3, "reason": "FOV 3: tile not found: %s%s" % (tile, where)}
    assert not os.path.exists(os.path.join(out, "fov_003.csv"))


def test_missing_tile_detected_by_recipe_itself(synthetic_copy, tmp_path):
    """A tile that disappears after the pre-flight check: what the recipe meets (here the
    shared SpaceTx reader's refusal) is still reported as 'tile not found', naming the tile."""
    d = os.path.dirname(synthetic_copy)
    tile = os.path.join(d, "primary-fov_000-r2-c1-z0.tiff")
    recipe = write(tmp_path / "r.py", (
        "import os, sys\n"
        "sys.path.insert(0, %r)\n"
        "import iss_numpy\n"
        "def process_fov(fov_index, experiment_url):\n"
        "    os.remove(%r)\n"
        "    return iss_numpy.process_fov(fov_index, experiment_url)\n")
        % (os.path.dirname(NUMPY_RECIPE), tile))
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic_copy, recipe, out))
    assert r.code == 1, r
    assert r.last_line.startswith("process-fov: FOV 0: tile not found: %s (tiles[" % tile), r.last_line
    assert "Traceback" in r.stderr


def test_recipe_that_raises(synthetic, tmp_path):
    recipe = write(tmp_path / "bad.py", (
        "def process_fov(fov_index, experiment_url):\n"
        "    raise ValueError('no spots found in round 2')\n"))
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, out, AWS_BATCH_JOB_ARRAY_INDEX="1",
                                          STARFISH_FOVS="1-3"))
    assert r.code == 1, r
    assert r.last_line == "process-fov: FOV 2: recipe raised ValueError: no spots found in round 2"
    assert "Traceback" in r.stderr and "raise ValueError" in r.stderr  # full traceback before it
    assert error_record(out, 2) == {"fov": 2, "reason": "FOV 2: recipe raised ValueError: no spots found in round 2"}


def test_multiline_exception_message_becomes_one_line(synthetic, tmp_path):
    recipe = write(tmp_path / "bad.py", (
        "def process_fov(fov_index, experiment_url):\n"
        "    raise RuntimeError('first line\\n  second line')\n"))
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, str(tmp_path / "fovs")))
    assert r.code == 1
    assert r.last_line == "process-fov: FOV 0: recipe raised RuntimeError: first line second line"


def test_control_characters_of_an_exception_message_do_not_reach_the_reason(synthetic, tmp_path):
    """Terminal escapes and NULs in a recipe's message are not written to the error record or stderr."""
    recipe = write(tmp_path / "bad.py", (
        "def process_fov(fov_index, experiment_url):\n"
        "    raise RuntimeError('\\x1b[2Jcleared\\x00 screen\\x07')\n"))
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, out))
    assert r.code == 1
    assert r.last_line == "process-fov: FOV 0: recipe raised RuntimeError: [2Jcleared screen"
    assert error_record(out, 0)["reason"] == "FOV 0: recipe raised RuntimeError: [2Jcleared screen"


def test_recipe_returning_garbage(synthetic, tmp_path):
    recipe = write(tmp_path / "bad.py", "def process_fov(fov_index, experiment_url):\n    return 42\n")
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, str(tmp_path / "fovs")))
    assert r.code == 1
    assert r.last_line.startswith("process-fov: FOV 0: recipe result could not be converted: recipe returned int")


@pytest.mark.parametrize("missing", ["STARFISH_RUN_ID", "STARFISH_EXPERIMENT", "STARFISH_RECIPE",
                                     "STARFISH_FOVS", "STARFISH_FOV_OUTPUT"])
def test_each_missing_variable(synthetic, fake_recipe, tmp_path, missing):
    out = str(tmp_path / "fovs")
    env = env_for(synthetic, fake_recipe, out)
    del env[missing]
    r = run_script(PROCESS_FOV, **env)
    assert r.code == 2, r
    assert re.match(r"^process-fov: %s is not set; example: %s=\S+" % (missing, missing), r.last_line), r.last_line
    assert "Traceback" not in r.stderr
    examples = {
        "STARFISH_RECIPE": "STARFISH_RECIPE=s3://lab-starfish-results/runs/261125-k3f9/inputs/recipe.py",
        "STARFISH_FOVS": "STARFISH_FOVS=0-9999 (or 1-3,7,9-12)",
        "STARFISH_FOV_OUTPUT": "STARFISH_FOV_OUTPUT=s3://lab-starfish-results/outputs/261125-k3f9/fovs",
    }
    if missing in examples:
        assert r.last_line == "process-fov: %s is not set; example: %s" % (missing, examples[missing])
    if missing in ("STARFISH_FOVS", "STARFISH_FOV_OUTPUT"):  # FOV or location unknown: no record
        assert not os.path.exists(out)
    else:  # FOV and location known: the reason is recorded for the merge
        assert os.listdir(out) == ["fov_000.error.json"]
        assert error_record(out, 0)["reason"] == r.last_line[len("process-fov: "):]


@pytest.mark.parametrize("extra, message", [
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "abc"},
     "process-fov: AWS_BATCH_JOB_ARRAY_INDEX must be a non-negative integer, got 'abc'"),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "-1"},
     "process-fov: AWS_BATCH_JOB_ARRAY_INDEX must be a non-negative integer, got '-1'"),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "1.5"},
     "process-fov: AWS_BATCH_JOB_ARRAY_INDEX must be a non-negative integer, got '1.5'"),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "3", "STARFISH_FOVS": "0,2-3"},
     "process-fov: AWS_BATCH_JOB_ARRAY_INDEX=3 is beyond STARFISH_FOVS=0,2-3 (3 FOVs)"),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "1", "STARFISH_FOVS": "2"},
     "process-fov: AWS_BATCH_JOB_ARRAY_INDEX=1 is beyond STARFISH_FOVS=2 (1 FOV)"),
    ({"STARFISH_FOVS": "1,x"},
     "process-fov: STARFISH_FOVS must be FOV indices and ranges like 0-9999 or 1-3,7,9-12, "
     "got '1,x': 'x' is not a FOV index or range"),
    ({"STARFISH_FOVS": "3-1"},
     "process-fov: STARFISH_FOVS must be FOV indices and ranges like 0-9999 or 1-3,7,9-12, "
     "got '3-1': the range '3-1' runs backwards; write it low-high, like 1-3"),
    ({"STARFISH_FOVS": "0-3,,7"},
     "process-fov: STARFISH_FOVS must be FOV indices and ranges like 0-9999 or 1-3,7,9-12, "
     "got '0-3,,7': an empty item (a comma too many) is not a FOV index or range"),
    ({"STARFISH_FOVS": "0-2000000"},
     "process-fov: STARFISH_FOVS must be FOV indices and ranges like 0-9999 or 1-3,7,9-12, "
     "got '0-2000000': FOV 2000000 is beyond any experiment this tool can run (1000000 at most)"),
    ({"STARFISH_FOVS": "4-7", "AWS_BATCH_JOB_ARRAY_INDEX": "3"},
     "process-fov: FOV 7 is not in the experiment (primary images have 4 FOVs: fov_000..fov_003)"),
])
def test_bad_selection(synthetic, fake_recipe, tmp_path, extra, message):
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic, fake_recipe, out, **extra))
    assert r.code == 2, r
    assert r.last_line == message
    assert "Traceback" not in r.stderr
    if "is not in the experiment" in message:  # the FOV is known: its reason is recorded
        assert error_record(out, 7)["reason"] == message[len("process-fov: "):]
    else:
        assert not os.path.exists(out)


@pytest.mark.parametrize("old, new", [
    ({"STARFISH_FOV_LIST": "0,2"}, "STARFISH_FOVS"),
    ({"STARFISH_FOV_OFFSET": "0", "STARFISH_FOV_LIST": "0,2"}, "STARFISH_FOVS"),
    ({"STARFISH_OUTPUT": "/tmp/run"}, "STARFISH_FOV_OUTPUT"),
])
def test_variables_of_the_previous_contract_are_named_not_read(synthetic, fake_recipe, tmp_path, old, new):
    env = env_for(synthetic, fake_recipe, str(tmp_path / "fovs"), **old)
    del env[new]
    r = run_script(PROCESS_FOV, **env)
    assert r.code == 2, r
    stale = " and ".join(k for k in ("STARFISH_FOV_OFFSET", "STARFISH_FOV_LIST", "STARFISH_OUTPUT") if k in old)
    assert r.last_line.startswith("process-fov: %s is not set; example: " % new)
    assert r.last_line.endswith("(%s %s no longer read: the launcher and this image disagree on the contract)"
                                % (stale, "is" if len(old) == 1 else "are")), r.last_line


def test_experiment_not_found(fake_recipe, tmp_path):
    exp = str(tmp_path / "nope" / "experiment.json")
    r = run_script(PROCESS_FOV, **env_for(exp, fake_recipe, str(tmp_path / "fovs")))
    assert r.code == 2, r
    assert r.last_line == "process-fov: experiment not found: %s" % exp


def test_recipe_not_found(synthetic, tmp_path):
    recipe = str(tmp_path / "missing.py")
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, str(tmp_path / "fovs")))
    assert r.code == 2, r
    assert r.last_line == "process-fov: recipe not found: %s" % recipe


def test_recipe_without_process_fov(synthetic, tmp_path):
    recipe = write(tmp_path / "r.py", "def run(fov):\n    return []\n")
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, str(tmp_path / "fovs")))
    assert r.code == 2, r
    assert r.last_line == ("process-fov: recipe %s does not define process_fov; write it as %s" % (recipe, SIGNATURES))


def test_recipe_with_syntax_error(synthetic, tmp_path):
    recipe = write(tmp_path / "r.py", "def process_fov(fov_index, experiment_url)\n    return []\n")
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, str(tmp_path / "fovs")))
    assert r.code == 2, r
    assert r.last_line.startswith("process-fov: recipe %s has a syntax error at line 1" % recipe)


def test_recipe_import_failure(synthetic, tmp_path):
    recipe = write(tmp_path / "r.py", "import starfish_not_installed\n")
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, str(tmp_path / "fovs")))
    assert r.code == 2, r
    assert r.last_line == ("process-fov: recipe %s failed to load: ModuleNotFoundError: "
                           "No module named 'starfish_not_installed'" % recipe)


# ---------------------------------------------------------------------------------------
# recipe conventions: the WDL workflow's (fov_index, experiment_url) and the AWS tutorial's
# (fov: FieldOfView, codebook: Codebook), run through the real script with the starfish stand-in

@pytest.fixture
def standin(monkeypatch):
    """The starfish stand-in (test/python/standin) importable in this process, for this test only."""
    monkeypatch.syspath_prepend(STANDIN)
    yield __import__("starfish")
    for name in [m for m in sys.modules if m == "starfish" or m.startswith("starfish.")]:
        del sys.modules[name]


def run_with_standin(env):
    return run_script(PROCESS_FOV, PYTHONPATH=STANDIN, **env)


# the AWS tutorial's recipe.py (docs/source/user_guide/processing_at_scale), its pipeline replaced
# by a table that says which FOV and codebook it was given
TUTORIAL_RECIPE = '''
from starfish import Codebook, DecodedIntensityTable, FieldOfView


def process_fov(fov: FieldOfView, codebook: Codebook) -> DecodedIntensityTable:
    primary = fov.get_image(FieldOfView.PRIMARY_IMAGES)
    assert len(primary["tiles"]) == 16, "4 rounds x 4 channels of this FOV"
    return DecodedIntensityTable({
        "radius": [1.5, 1.5], "z": [0, 0], "y": [20.0, 40.0], "x": [10.0, 30.0], "spot_id": [0, 1],
        "features": [0, 1], "xc": [1.0, 3.0], "yc": [2.0, 4.0], "zc": [0.00005, 0.00005],
        "target": [fov.name, codebook.target.values[0]], "distance": [0.25, 0.0],
        "passes_thresholds": [True, True]})
'''

# the WDL workflow's recipe (workflows/wdl/iss_published/recipe.py): loads the experiment itself and
# returns decoded.to_decoded_dataframe(), i.e. DecodedSpots without pixel coordinates
WDL_RECIPE = '''
import starfish
from starfish import DecodedIntensityTable


def process_fov(field_num: int, experiment_str: str):
    fov_str: str = f"fov_{int(field_num):03d}"
    experiment = starfish.Experiment.from_json(experiment_str)
    fov = experiment[fov_str]
    decoded = DecodedIntensityTable({
        "radius": [1.5], "z": [0], "y": [20.0], "x": [10.0], "spot_id": [0], "features": [0],
        "xc": [12.5], "yc": [7.25], "zc": [0.00005], "target": [fov.name], "distance": [0.1],
        "passes_thresholds": [True]})
    df = decoded.to_decoded_dataframe()
    return df
'''


def test_tutorial_convention_gets_the_fov_and_the_codebook_starfish_loads(synthetic, tmp_path):
    recipe = write(tmp_path / "recipe.py", TUTORIAL_RECIPE)
    out = str(tmp_path / "fovs")
    r = run_with_standin(env_for(synthetic, recipe, out, AWS_BATCH_JOB_ARRAY_INDEX="2"))
    assert r.code == 0, r
    rows = read_csv(os.path.join(out, "fov_002.csv"))
    assert rows == [["fov", "x", "y", "z", "target", "quality", "xc", "yc", "zc", "radius", "spot_id",
                     "features", "distance", "passes_thresholds"],
                    ["2", "10.00", "20.00", "0", "fov_002", "0.750", "1", "2", "5e-05", "1.5", "0", "0",
                     "0.25", "True"],
                    ["2", "30.00", "40.00", "0", "ACTB", "1.000", "3", "4", "5e-05", "1.5", "1", "1",
                     "0", "True"]]


def test_tutorial_convention_by_parameter_names_alone(synthetic, tmp_path):
    recipe = write(tmp_path / "recipe.py", "def process_fov(fov, codebook):\n"
                                           "    return [{'x': 1, 'y': 2, 'target': fov.name}]\n")
    out = str(tmp_path / "fovs")
    r = run_with_standin(env_for(synthetic, recipe, out, STARFISH_FOVS="3"))
    assert r.code == 0, r
    assert read_csv(os.path.join(out, "fov_003.csv"))[1] == ["3", "1.00", "2.00", "0", "fov_003", "1.000"]


def test_wdl_convention_returning_decoded_spots_keeps_physical_coordinates(synthetic, tmp_path):
    recipe = write(tmp_path / "recipe.py", WDL_RECIPE)
    out = str(tmp_path / "fovs")
    r = run_with_standin(env_for(synthetic, recipe, out, AWS_BATCH_JOB_ARRAY_INDEX="1"))
    assert r.code == 0, r
    # starfish's to_decoded_dataframe() drops pixel x, y, z: they stay empty, never invented
    assert read_csv(os.path.join(out, "fov_001.csv")) == [
        ["fov", "x", "y", "z", "target", "quality", "xc", "yc", "zc", "radius", "spot_id", "distance",
         "passes_thresholds"],
        ["1", "", "", "", "fov_001", "0.900", "12.5", "7.25", "5e-05", "1.5", "0", "0.1", "True"]]


@pytest.mark.parametrize("signature, convention", [
    ("fov_index, experiment_url", pf.INDEX_CONVENTION),           # this project's examples
    ("field_num: int, experiment_str: str", pf.INDEX_CONVENTION),  # starfish's WDL recipes
    ("a: int, b: str", pf.INDEX_CONVENTION),
    ("fov, experiment_url", pf.INDEX_CONVENTION),                  # 'fov' alone says nothing
    ("fov_index, experiment_url, verbose=False", pf.INDEX_CONVENTION),
    ("fov: FieldOfView, codebook: Codebook", pf.FOV_CONVENTION),   # starfish's AWS tutorial
    ("fov: 'starfish.FieldOfView', codebook: 'Codebook'", pf.FOV_CONVENTION),  # PEP 563 strings
    ("fov, codebook", pf.FOV_CONVENTION),
    ("field_of_view, cb", pf.FOV_CONVENTION),
    ("a: FieldOfView, b", pf.FOV_CONVENTION),
    ("fov_index: FieldOfView, experiment_url: Codebook", pf.FOV_CONVENTION),  # annotations decide
])
def test_the_signature_decides_the_convention(signature, convention):
    namespace = {"FieldOfView": type("FieldOfView", (), {}), "Codebook": type("Codebook", (), {})}
    exec("def process_fov(%s):\n    pass\n" % signature, namespace)
    assert pf.recipe_convention(namespace["process_fov"], "r.py") == convention


@pytest.mark.parametrize("signature, why", [
    ("a, b", "neither its annotations nor its parameter names say which arguments it takes"),
    ("fov, b", "neither its annotations nor its parameter names say which arguments it takes"),
    ("fov_index: int, codebook: Codebook", "its annotations mix both conventions"),
    ("fov_index, codebook", "its parameter names mix both conventions"),
    ("fov_index", "it must take exactly two arguments"),
    ("fov_index, experiment_url, extra", "it must take exactly two arguments"),
    ("fov_index, experiment_url, *, key", "it must take exactly two arguments"),
    ("*args", "it must take exactly two arguments"),
])
def test_a_signature_that_says_neither_convention_is_refused_with_both_examples(signature, why):
    namespace = {"Codebook": type("Codebook", (), {})}
    exec("def process_fov(%s):\n    pass\n" % signature, namespace)
    with pytest.raises(pf.Failure) as info:
        pf.recipe_convention(namespace["process_fov"], "s3://lab/r.py")
    assert info.value.code == pf.EXIT_BAD_ENV
    assert info.value.reason.startswith("recipe s3://lab/r.py: cannot tell how to call process_fov(")
    assert info.value.reason.endswith(": %s; write it as %s" % (why, SIGNATURES))


def test_an_undecidable_recipe_fails_before_it_runs(synthetic, tmp_path):
    recipe = write(tmp_path / "recipe.py", "def process_fov(a, b):\n    raise SystemExit('ran')\n")
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, out))
    assert r.code == 2, r
    assert r.last_line == ("process-fov: recipe %s: cannot tell how to call process_fov(a, b): neither its "
                           "annotations nor its parameter names say which arguments it takes; write it as %s"
                           % (recipe, SIGNATURES))
    assert error_record(out, 0)["reason"] == r.last_line[len("process-fov: "):]


def test_tutorial_convention_without_starfish_says_what_to_do(synthetic, tmp_path):
    recipe = write(tmp_path / "recipe.py", "def process_fov(fov: 'FieldOfView', codebook: 'Codebook'):\n"
                                           "    return []\n")
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, str(tmp_path / "fovs")))
    assert r.code == 2, r
    assert r.last_line == (
        "process-fov: the recipe is written as process_fov(fov: FieldOfView, codebook: Codebook), which needs "
        "starfish to load the experiment, and starfish cannot be imported here (ModuleNotFoundError: No module "
        "named 'starfish'); run it in the process-fov image, or write it as "
        "process_fov(fov_index: int, experiment_url: str)")


def test_a_fov_starfish_does_not_find_is_named(synthetic, standin):
    with pytest.raises(pf.Failure) as info:
        pf.recipe_arguments(pf.FOV_CONVENTION, synthetic, 7, "fov_007")
    assert info.value.code == pf.EXIT_BAD_ENV
    assert info.value.reason == ("FOV 7 (fov_007) is not in the experiment as starfish reads it "
                                 "(4 FOVs: fov_000..fov_003)")
    fov, codebook = pf.recipe_arguments(pf.FOV_CONVENTION, synthetic, 1, "fov_001")
    assert fov.name == "fov_001" and fov.image_types == {"primary", "nuclei", "dots"}
    assert "ACTB" in codebook.target.values
    assert pf.recipe_arguments(pf.INDEX_CONVENTION, synthetic, 1, "fov_001") == (1, synthetic)


def test_the_tutorial_convention_looks_the_fov_up_by_the_name_it_is_given(synthetic_copy, standin):
    """The FOV's name comes from one place in process-fov; an experiment naming its FOVs fov_0000
    gets fov_0000 (not fov_000) once that place says so."""
    folder = os.path.dirname(synthetic_copy)
    for manifest in ("primary_image.json", "nuclei.json", "dots.json"):
        path = os.path.join(folder, manifest)
        with open(path) as fh:
            doc = json.load(fh)
        doc["contents"] = {"fov_%04d" % int(k[4:]): v for k, v in doc["contents"].items()}
        with open(path, "w") as fh:
            json.dump(doc, fh)
    fov, _ = pf.recipe_arguments(pf.FOV_CONVENTION, synthetic_copy, 2, "fov_0002")
    assert fov.name == "fov_0002" and len(fov.get_image("primary")["tiles"]) == 16


def test_an_experiment_starfish_refuses_is_the_fovs_reason(synthetic, monkeypatch):
    class Experiment(object):
        @classmethod
        def from_json(cls, url):
            raise ValueError("version 6.0.0 not supported.  This version of the starfish library only "
                             "supports formats from 4.0.0 to 5.0.0")
    monkeypatch.setitem(sys.modules, "starfish", types.SimpleNamespace(Experiment=Experiment))
    with pytest.raises(pf.Failure) as info:
        pf.recipe_arguments(pf.FOV_CONVENTION, synthetic, 0, "fov_000")
    assert info.value.code == pf.EXIT_FAILURE
    assert info.value.reason == ("FOV 0: starfish's Experiment.from_json(%s) raised ValueError: version 6.0.0 not "
                                 "supported. This version of the starfish library only supports formats from "
                                 "4.0.0 to 5.0.0" % synthetic)


# ---------------------------------------------------------------------------------------
# result types -> the FOV's CSV (in-process, starfish's real class and column names via the stand-in)

SIX = ["fov", "x", "y", "z", "target", "quality"]


def per_round_max_channel(spots):
    """The features coordinates starfish's PerRoundMaxChannel leaves on a DecodedIntensityTable
    (spot attributes, then xc, yc, zc, then target, distance, passes_thresholds), for
    spots = [(x, y, z, target, distance, passes)]; physical = pixel * 0.5 um."""
    cols = collections.OrderedDict((k, []) for k in (
        "radius", "z", "y", "x", "spot_id", "features", "xc", "yc", "zc", "target", "distance",
        "passes_thresholds"))
    for i, (x, y, z, target, distance, passes) in enumerate(spots):
        for k, v in (("radius", 1.5), ("z", z), ("y", y), ("x", x), ("spot_id", i), ("features", i),
                     ("xc", x * 0.5), ("yc", y * 0.5), ("zc", z * 0.5), ("target", target),
                     ("distance", distance), ("passes_thresholds", passes)):
            cols[k].append(v)
    return cols


SPOTS = [(10.0, 20.0, 0, "ACTB", 0.1, True), (11.0, 21.0, 0, float("nan"), 0.5, False),
         (30.5, 40.25, 1, "VIM", 0.3, True), (50.0, 60.0, 0, "KRT8", 0.0, False)]


def test_decoded_intensity_table_keeps_every_column(standin):
    header, rows = pf.to_table(3, standin.DecodedIntensityTable(per_round_max_channel(SPOTS)))
    assert header == SIX + ["xc", "yc", "zc", "radius", "spot_id", "features", "distance", "passes_thresholds"]
    # undecoded ('nan') and below-threshold features are dropped; quality = 1 - distance
    assert rows == [["3", "10.00", "20.00", "0", "ACTB", "0.900", "5", "10", "0", "1.5", "0", "0", "0.1", "True"],
                    ["3", "30.50", "40.25", "1", "VIM", "0.700", "15.25", "20.125", "0.5", "1.5", "2", "2", "0.3",
                     "True"]]


def test_decoded_spots_of_to_decoded_dataframe_place_spots_by_physical_coordinates(standin):
    spots = standin.DecodedIntensityTable(per_round_max_channel(SPOTS)).to_decoded_dataframe()
    assert "x" not in spots.data.columns  # as starfish 0.2.2 and 0.4.0 build it
    header, rows = pf.to_table(0, spots)
    assert header == SIX + ["xc", "yc", "zc", "radius", "spot_id", "distance", "passes_thresholds"]
    assert [r[:9] for r in rows] == [["0", "", "", "", "ACTB", "0.900", "5", "10", "0"],
                                     ["0", "", "", "", "VIM", "0.700", "15.25", "20.125", "0.5"]]


def test_an_undecoded_intensity_table_needs_a_target(standin):
    cols = per_round_max_channel(SPOTS)
    for k in ("target", "distance", "passes_thresholds"):
        del cols[k]
    with pytest.raises(ValueError) as info:
        pf.to_table(0, standin.IntensityTable(cols))
    assert str(info.value) == (
        "recipe result has columns features, radius, spot_id, x, xc, y, yc, z, zc; needs target and pixel x, y "
        "(or starfish's physical xc, yc), e.g. [{'x': 10.5, 'y': 20.0, 'target': 'ACTB'}]")


def test_dataframe_structured_array_dict_and_list_of_dicts(standin):
    expected = (SIX + ["xc", "intensity", "cell_id"],
                [["1", "1.50", "2.50", "0", "ACTB", "0.250", "0.75", "0.25", "cell 7"],
                 ["1", "3.00", "4.00", "2", "VIM", "0.750", "1.5", "0.75", ""]])
    columns = collections.OrderedDict((("x", [1.5, 3.0]), ("y", [2.5, 4.0]), ("z", [0, 2]),
                                       ("target", ["ACTB", "VIM"]), ("intensity", [0.25, 0.75]),
                                       ("xc", [0.75, 1.5]), ("cell_id", ["cell 7", None])))
    from starfish._frame import DataFrame
    assert pf.to_table(1, DataFrame(columns)) == expected
    assert pf.to_table(1, dict(columns)) == expected
    assert pf.to_table(1, [dict(zip(columns, values)) for values in zip(*columns.values())]) == expected
    arr = np.array(list(zip(*[v if k != "cell_id" else ["cell 7", ""] for k, v in columns.items()])),
                   dtype=[("x", "f8"), ("y", "f8"), ("z", "i4"), ("target", "U8"), ("intensity", "f4"),
                          ("xc", "f8"), ("cell_id", "U8")])
    assert pf.to_table(1, arr) == expected


def test_list_of_dicts_keeps_the_order_keys_first_appear():
    header, rows = pf.to_table(5, [{"x": 1, "y": 2, "target": "A", "b": 1},
                                   {"x": 3.333, "y": 4, "z": 1.0, "target": "B", "quality": 1.7, "a": 2}])
    assert header == SIX + ["b", "a"]
    assert rows == [["5", "1.00", "2.00", "0", "A", "1.000", "1", ""], ["5", "3.33", "4.00", "1", "B", "1.000", "", "2"]]


def empty_results():
    from starfish._frame import DataFrame
    import starfish
    yield "no spots in a list", [], SIX
    yield "no columns", {}, SIX
    yield "an empty numpy array", np.array([]), SIX
    yield "an empty DataFrame", DataFrame(), SIX
    yield "zero rows of named columns", {"x": [], "y": [], "target": [], "xc": []}, SIX + ["xc"]
    yield "an empty structured array", np.zeros(0, dtype=[("x", "f8"), ("y", "f8"), ("target", "U8")]), SIX
    empty = starfish.DecodedIntensityTable(per_round_max_channel([]))
    everything = SIX + ["xc", "yc", "zc", "radius", "spot_id", "features", "distance", "passes_thresholds"]
    yield "an empty DecodedIntensityTable", empty, everything
    yield "empty DecodedSpots", empty.to_decoded_dataframe(), [c for c in everything if c != "features"]
    yield "only undecoded spots", per_round_max_channel(SPOTS[1:2]), everything


def test_an_empty_result_is_a_table_with_no_spots(standin):
    for what, result, header in empty_results():
        assert pf.to_table(4, result) == (header, []), what


def test_none_and_unusable_results_are_errors():
    with pytest.raises(TypeError, match=r"^recipe returned None; return the decoded spots"):
        pf.to_table(0, None)
    with pytest.raises(TypeError, match=r"^recipe returned int; expected a DecodedIntensityTable"):
        pf.to_table(0, 42)
    with pytest.raises(ValueError, match="needs target and pixel x, y"):
        pf.to_table(0, [{"x": 1, "y": 2}])
    with pytest.raises(ValueError, match="spot 0 has a non-finite x nan"):
        pf.to_table(0, [{"x": float("nan"), "y": 2, "target": "A"}])
    with pytest.raises(ValueError, match="spot 1 has a non-finite xc inf"):
        pf.to_table(0, {"xc": [1.0, float("inf")], "yc": [1.0, 2.0], "target": ["A", "B"]})
    with pytest.raises(TypeError, match=r"different lengths \(x: 2, y: 1, target: 2\)"):
        pf.to_table(0, {"x": [1, 2], "y": [1], "target": ["A", "B"]})


def test_empty_fov_succeeds_with_a_header_only_table(synthetic, tmp_path):
    recipe = write(tmp_path / "recipe.py", "def process_fov(fov_index, experiment_url):\n    return []\n")
    out = str(tmp_path / "fovs")
    os.makedirs(out)
    write(os.path.join(out, "fov_001.error.json"), '{"fov": 1, "reason": "recipe result has no columns"}')
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, out, AWS_BATCH_JOB_ARRAY_INDEX="1"))
    assert r.code == 0, r
    assert "process-fov: FOV 1: 0 spots in " in r.stdout
    assert sorted(os.listdir(out)) == ["fov_001.csv", "fov_001.metrics.json"]
    with open(os.path.join(out, "fov_001.csv")) as fh:
        assert fh.read() == "fov,x,y,z,target,quality\n"


def test_a_recipe_that_forgets_to_return_fails(synthetic, tmp_path):
    """The AWS tutorial's template recipe ends in a bare `return`: that is a mistake, not 0 spots."""
    recipe = write(tmp_path / "recipe.py", "def process_fov(fov_index, experiment_url):\n    return\n")
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic, recipe, out))
    assert r.code == 1, r
    assert r.last_line.startswith("process-fov: FOV 0: recipe result could not be converted: recipe returned "
                                  "None; return the decoded spots, e.g. `return decoded`")
    assert not os.path.exists(os.path.join(out, "fov_000.csv"))


# ---------------------------------------------------------------------------------------
# hostile column names and values

def test_hostile_names_and_values_cannot_break_the_table():
    hostile = collections.OrderedDict([
        ("x", [1.0]), ("y", [2.0]), ("target", ['=HYPERLINK("http://evil","ACTB")']),
        ("evil\nfov,x,y,z,target,quality\n0", ["a\nfov,x,y,z,target,quality\n0,1,2,0,FAKE,1"]),
        ("=cmd|' /C calc'!A0", ["+SUM(1,2)"]), ('"quoted", name', ["@import"]),
        ("delta", [-1.5]), ("text", ["-2 then words"]), ("numeric_text", ["-3.5"]),
        ("long", ["w" * 5000]), ("ctrl", ["bell\x07esc\x1b[31mred\x00"]), ("X", [99.0]),
        ("evil\nfov,x,y,z,target,quality\n1", ["second column, same safe name"]),
    ])
    header, rows = pf.to_table(0, hostile)
    text = pf.render_csv(header, rows)
    parsed = list(csv.reader(io.StringIO(text)))
    assert len(text.splitlines()) == 2 and len(parsed) == 2  # one header line, one row, nothing injected
    assert parsed[0] == SIX + ["evil_fov_x_y_z_target_quality_0", "_cmd____C_calc__A0", "_quoted___name",
                               "delta", "text", "numeric_text", "long", "ctrl",
                               "evil_fov_x_y_z_target_quality_1"]
    row = dict(zip(parsed[0], parsed[1]))
    assert row["target"] == "'=HYPERLINK(\"http://evil\",\"ACTB\")"  # shown as text, never run
    assert row["evil_fov_x_y_z_target_quality_0"] == "a fov,x,y,z,target,quality 0,1,2,0,FAKE,1"
    assert row["_cmd____C_calc__A0"] == "'+SUM(1,2)" and row["_quoted___name"] == "'@import"
    assert row["delta"] == "-1.5" and row["numeric_text"] == "-3.5"  # numbers stay numbers
    assert row["text"] == "'-2 then words"
    assert len(row["long"]) == 200 and row["long"].endswith("...")
    assert row["ctrl"] == "bell esc [31mred"
    assert row["x"] == "1.00"  # 'X' is the reserved x, not a second x column


def test_extra_columns_are_capped(capsys):
    cols = collections.OrderedDict([("x", [1]), ("y", [2]), ("target", ["A"])])
    cols.update(("c%02d" % i, [i]) for i in range(40))
    header, rows = pf.to_table(0, cols)
    assert header == SIX + ["c%02d" % i for i in range(32)] and len(rows[0]) == 38
    assert ("process-fov: warning: the recipe returned 40 columns beyond fov,x,y,z,target,quality; the first 32 "
            "are kept, dropped: c32, c33, c34, c35, c36, c37, c38, c39") in capsys.readouterr().err


def test_render_csv_quotes_awkward_targets():
    text = pf.render_csv(*pf.to_table(0, [{"x": 1, "y": 2, "target": "HLA-A, HLA-B"}]))
    assert text == 'fov,x,y,z,target,quality\n0,1.00,2.00,0,"HLA-A, HLA-B",1.000\n'


# ---------------------------------------------------------------------------------------
# packed children: a chunk of FOVs per child (perChild of the STARFISH_FOVS_AT object)

# FOV 1 fails; FOV 0 sleeps 0.3 s; every load of the module leaves a line in LOADS, so a test can
# count how often the child imported the recipe
PACKED_RECIPE = '''
import time
with open(%(loads)r, "a") as fh:
    fh.write("loaded\\n")


def process_fov(fov_index, experiment_url):
    if fov_index == 0:
        time.sleep(0.3)
    if fov_index == 1:
        raise ValueError("no spots found in round 2")
    return [{"x": 1, "y": 2, "target": "GENE_%%d" %% fov_index}]
'''


def fovs_object(tmp_path, fovs, **fields):
    """The launcher's FOV list object (src/lifecycle/submit.ts): {"fovs": ..., "perChild": K}."""
    obj = dict(fovs=fovs, **fields)
    path = tmp_path / "fovs-r0-0.json"
    path.write_text(json.dumps(obj))
    return str(path)


def packed_env(synthetic, recipe, out, fovs_at, index=None):
    env = env_for(synthetic, recipe, out, STARFISH_FOVS=None, STARFISH_FOVS_AT=fovs_at)
    if index is not None:
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(index)
    return env


@pytest.fixture
def packed_recipe(tmp_path):
    loads = str(tmp_path / "loads.txt")
    return write(tmp_path / "packed.py", PACKED_RECIPE % {"loads": loads}), loads


def metrics_of(out, fov):
    with open(os.path.join(out, "fov_%03d.metrics.json" % fov)) as fh:
        return json.load(fh)


def test_a_packed_child_with_one_failing_fov_keeps_the_others(synthetic, packed_recipe, tmp_path):
    recipe, loads = packed_recipe
    out = str(tmp_path / "fovs")
    at = fovs_object(tmp_path, "0-3", perChild=3)
    r = run_script(PROCESS_FOV, **packed_env(synthetic, recipe, out, at, index=0))
    assert r.code == 1, r
    assert sorted(os.listdir(out)) == ["fov_000.csv", "fov_000.metrics.json", "fov_001.error.json",
                                       "fov_001.metrics.json", "fov_002.csv", "fov_002.metrics.json"]
    assert read_csv(os.path.join(out, "fov_000.csv"))[1] == ["0", "1.00", "2.00", "0", "GENE_0", "1.000"]
    assert read_csv(os.path.join(out, "fov_002.csv"))[1] == ["2", "1.00", "2.00", "0", "GENE_2", "1.000"]
    reason = "FOV 1: recipe raised ValueError: no spots found in round 2"
    assert error_record(out, 1) == {"fov": 1, "reason": reason}
    # the failure is said when it happens, and the child's last line names the FOVs that failed
    assert "process-fov: " + reason in r.stderr.splitlines()
    assert r.last_line == "process-fov: 1 of 3 FOVs failed (1); first: " + reason
    # one import of the recipe for the whole chunk: the point of packing
    with open(loads) as fh:
        assert fh.read() == "loaded\n"


def test_the_last_child_takes_the_partial_chunk(synthetic, packed_recipe, tmp_path):
    recipe, loads = packed_recipe
    out = str(tmp_path / "fovs")
    at = fovs_object(tmp_path, "0-3", perChild=3)  # children 0 (FOVs 0-2) and 1 (FOV 3)
    r = run_script(PROCESS_FOV, **packed_env(synthetic, recipe, out, at, index=1))
    assert r.code == 0, r
    assert sorted(os.listdir(out)) == ["fov_003.csv", "fov_003.metrics.json"]
    r = run_script(PROCESS_FOV, **packed_env(synthetic, recipe, out, at, index=2))
    assert r.code == 2, r
    assert r.last_line == ("process-fov: AWS_BATCH_JOB_ARRAY_INDEX=2 is beyond STARFISH_FOVS=0-3 "
                           "(4 FOVs, 3 per child: children 0-1)")


def test_retry_of_the_failed_fov_alone(synthetic, packed_recipe, tmp_path):
    """The control plane's retry sends only the FOVs that failed: here FOV 1, now succeeding."""
    recipe, _ = packed_recipe
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **packed_env(synthetic, recipe, out, fovs_object(tmp_path, "0-3", perChild=3)))
    assert r.code == 1, r
    before = {f: os.path.getmtime(os.path.join(out, f)) for f in ("fov_000.csv", "fov_002.csv")}
    fixed = write(tmp_path / "fixed.py", "def process_fov(fov_index, experiment_url):\n"
                                         "    return [{'x': 5, 'y': 6, 'target': 'FIXED_%d' % fov_index}]\n")
    r = run_script(PROCESS_FOV, **packed_env(synthetic, fixed, out, fovs_object(tmp_path, "1", perChild=3)))
    assert r.code == 0, r
    assert read_csv(os.path.join(out, "fov_001.csv"))[1][4] == "FIXED_1"
    assert not os.path.exists(os.path.join(out, "fov_001.error.json"))
    assert {f: os.path.getmtime(os.path.join(out, f)) for f in before} == before  # the others untouched


@pytest.mark.parametrize("fovs, per_child, index, chunk", [
    ("0-9", 3, 0, [0, 1, 2]),
    ("0-9", 3, 2, [6, 7, 8]),
    ("0-9", 3, 3, [9]),                  # the last, partial chunk
    ("5-6", 10, 0, [5, 6]),              # perChild larger than the list: one child takes all
    ("1-3,7,9-12", 3, 1, [7, 9, 10]),    # positions in the list, across its ranges
    ("1-3,7,9-12", 1, 7, [12]),
    ("0-999999", 10000, 99, list(range(990000, 1000000))),
])
def test_chunk_arithmetic(fovs, per_child, index, chunk):
    assert pf.chunk_of(sio.parse_fov_ranges(fovs), per_child, index) == chunk


@pytest.mark.parametrize("fovs, per_child, index, message", [
    ("0-9", 3, 4, "AWS_BATCH_JOB_ARRAY_INDEX=4 is beyond STARFISH_FOVS=0-9 (10 FOVs, 3 per child: children 0-3)"),
    ("5-6", 10, 1, "AWS_BATCH_JOB_ARRAY_INDEX=1 is beyond STARFISH_FOVS=5-6 (2 FOVs, 10 per child: children 0-0)"),
    ("2", 1, 1, "AWS_BATCH_JOB_ARRAY_INDEX=1 is beyond STARFISH_FOVS=2 (1 FOV)"),
])
def test_a_child_past_the_last_chunk_is_a_bad_environment(fovs, per_child, index, message):
    with pytest.raises(pf.Failure) as info:
        pf.chunk_of(sio.parse_fov_ranges(fovs), per_child, index)
    assert info.value.code == pf.EXIT_BAD_ENV
    assert info.value.reason == message


def test_a_bad_per_child_is_refused_before_any_fov_runs(synthetic, packed_recipe, tmp_path):
    recipe, loads = packed_recipe
    out = str(tmp_path / "fovs")
    at = fovs_object(tmp_path, "0-3", perChild=0)
    r = run_script(PROCESS_FOV, **packed_env(synthetic, recipe, out, at))
    assert r.code == 2, r
    assert r.last_line == ('process-fov: the "perChild" of STARFISH_FOVS_AT=%s must be a whole number of FOVs '
                           'from 1 to 10000, got 0; example: {"fovs": "0-9999", "perChild": 15}' % at)
    assert not os.path.exists(out) and not os.path.exists(loads)


def test_a_recipe_that_cannot_load_fails_every_fov_of_the_chunk(synthetic, tmp_path):
    recipe = write(tmp_path / "broken.py", "def process_fov(fov_index, experiment_url)\n    return []\n")
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **packed_env(synthetic, recipe, out, fovs_object(tmp_path, "0-3", perChild=2),
                                             index=1))
    assert r.code == 2, r
    reason = r.last_line[len("process-fov: "):]
    assert reason.startswith("recipe %s has a syntax error at line 1" % recipe)
    assert sorted(os.listdir(out)) == ["fov_002.error.json", "fov_003.error.json"]
    assert error_record(out, 3) == {"fov": 3, "reason": reason}


def test_a_retry_clears_the_stale_reasons_of_its_whole_chunk(synthetic, tmp_path):
    """An attempt killed at its first FOV leaves no earlier attempt's reason on the FOVs after it."""
    out = str(tmp_path / "fovs")
    os.makedirs(out)
    for fov in (0, 1, 2):
        write(os.path.join(out, "fov_%03d.error.json" % fov), '{"fov": %d, "reason": "old failure"}' % fov)
    killed = write(tmp_path / "killed.py", "import os, signal\n\ndef process_fov(fov_index, experiment_url):\n"
                                           "    os.kill(os.getpid(), signal.SIGKILL)\n")
    r = run_script(PROCESS_FOV, **packed_env(synthetic, killed, out, fovs_object(tmp_path, "0-2", perChild=3)))
    assert r.code != 0, r
    assert os.listdir(out) == []


def one_fov_recipe(tmp_path, fov, statements, imports=""):
    """A recipe that runs ``statements`` (one per line) for FOV ``fov`` and then, like for every
    other FOV, returns one ACTB spot."""
    body = "".join("        %s\n" % line for line in statements)
    source = ("%sdef process_fov(fov_index, experiment_url):\n"
              "    if fov_index == %d:\n%s"
              "    return [{'x': 1, 'y': 2, 'target': 'ACTB'}]\n" % (imports, fov, body))
    return write(tmp_path / ("recipe_fov_%d.py" % fov), source)


def run_one_child(synthetic, recipe, tmp_path, fovs, per_child):
    """process-fov as one child of the chunk ``fovs``: (FOV output folder, result)."""
    out = str(tmp_path / "fovs")
    return out, run_script(PROCESS_FOV, **packed_env(synthetic, recipe, out,
                                                     fovs_object(tmp_path, fovs, perChild=per_child)))


def test_a_memory_error_fails_its_fov_and_the_chunk_goes_on(synthetic, tmp_path):
    recipe = one_fov_recipe(tmp_path, 0, ["bytearray(1 << 60)  # more than any machine has"])
    out, r = run_one_child(synthetic, recipe, tmp_path, "0-1", 2)
    assert r.code == 1, r
    assert error_record(out, 0)["reason"] == "FOV 0: recipe ran out of memory (MemoryError); give the job more memory"
    assert read_csv(os.path.join(out, "fov_001.csv"))[1][4] == "ACTB"
    assert sorted(metrics_of(out, f)["fov"] for f in (0, 1)) == [0, 1]


def test_a_recipe_that_calls_sys_exit_fails_its_fov_and_the_chunk_goes_on(synthetic, tmp_path):
    """sys.exit(0) in a recipe ended the job as a success with no table and no reason."""
    recipe = one_fov_recipe(tmp_path, 0, ["sys.exit(0)"], imports="import sys\n\n")
    out, r = run_one_child(synthetic, recipe, tmp_path, "0-1", 2)
    assert r.code == 1, r
    assert error_record(out, 0)["reason"] == ("FOV 0: recipe called sys.exit(0) instead of returning its spots; "
                                              "return them, e.g. `return decoded`")
    assert read_csv(os.path.join(out, "fov_001.csv"))[1][4] == "ACTB"
    assert sorted(metrics_of(out, f)["fov"] for f in (0, 1)) == [0, 1]


def test_a_recipe_that_calls_sys_exit_when_loaded_fails_every_fov_of_the_chunk(synthetic, tmp_path):
    recipe = write(tmp_path / "quits.py", "import sys\nsys.exit(0)\n\ndef process_fov(fov_index, experiment_url):\n"
                                          "    return []\n")
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **packed_env(synthetic, recipe, out, fovs_object(tmp_path, "0-1", perChild=2)))
    assert r.code == 2, r
    reason = "recipe %s failed to load: SystemExit: 0" % recipe
    assert r.last_line == "process-fov: " + reason
    assert [error_record(out, f)["reason"] for f in (0, 1)] == [reason, reason]


def test_the_tutorial_convention_loads_the_experiment_once_per_chunk(synthetic, standin, tmp_path, monkeypatch):
    loaded = []
    real = standin.Experiment.from_json

    def counting(url):
        loaded.append(url)
        return real(url)
    monkeypatch.setattr(standin.Experiment, "from_json", staticmethod(counting))
    recipe = write(tmp_path / "recipe.py", "def process_fov(fov, codebook):\n"
                                           "    return [{'x': 1, 'y': 2, 'target': fov.name}]\n")
    out = str(tmp_path / "fovs")
    assert pf.main(packed_env(synthetic, recipe, out, fovs_object(tmp_path, "0-3", perChild=4))) == 0
    assert loaded == [synthetic]
    assert [read_csv(os.path.join(out, "fov_%03d.csv" % f))[1][4] for f in range(4)] == \
        ["fov_000", "fov_001", "fov_002", "fov_003"]


# ---------------------------------------------------------------------------------------
# per-FOV measurements: fov_NNN.metrics.json

def test_every_fov_records_its_metrics_success_or_failure(synthetic, packed_recipe, tmp_path):
    recipe, _ = packed_recipe
    out = str(tmp_path / "fovs")
    run_script(PROCESS_FOV, **packed_env(synthetic, recipe, out, fovs_object(tmp_path, "0-2", perChild=3)))
    for fov in (0, 1, 2):
        m = metrics_of(out, fov)
        assert sorted(m) == ["cpu_seconds", "fov", "peak_rss_mib", "wall_seconds"]
        assert m["fov"] == fov
        for key in ("wall_seconds", "cpu_seconds", "peak_rss_mib"):
            assert isinstance(m[key], float) and m[key] >= 0, m
        assert m["peak_rss_mib"] > 1, m  # a Python process holds megabytes
    assert metrics_of(out, 0)["wall_seconds"] >= 0.3  # FOV 0 slept 0.3 s


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="the peak is per FOV only on Linux")
def test_peak_memory_is_each_fovs_own_not_the_chunks(synthetic, tmp_path):
    """FOV 0 holds 200 MiB; FOV 1 nothing: FOV 1's peak is not FOV 0's high-water mark."""
    recipe = one_fov_recipe(tmp_path, 0, ["a = np.ones(200 << 17)  # 200 MiB of float64, touched", "del a"],
                            imports="import numpy as np\n")
    out, r = run_one_child(synthetic, recipe, tmp_path, "0-1", 2)
    assert r.code == 0, r
    big, small = metrics_of(out, 0)["peak_rss_mib"], metrics_of(out, 1)["peak_rss_mib"]
    assert big >= 200, big
    assert small < big - 150, (big, small)


def test_a_fov_the_experiment_does_not_have_fails_alone_and_the_chunk_exits_2(synthetic, fake_recipe, tmp_path):
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **packed_env(synthetic, fake_recipe, out, fovs_object(tmp_path, "2-5", perChild=4)))
    assert r.code == 2, r  # a wrong request, said after the FOVs that could run have run
    assert [read_csv(os.path.join(out, "fov_%03d.csv" % f))[1][4] for f in (2, 3)] == ["GENE_2", "GENE_3"]
    assert error_record(out, 4)["reason"] == "FOV 4 is not in the experiment (primary images have 4 FOVs: fov_000..fov_003)"
    assert r.last_line.startswith("process-fov: 2 of 4 FOVs failed (4-5); first: FOV 4 is not in the experiment")


def test_an_interrupt_stops_the_chunk_and_says_so_for_the_fovs_left(synthetic, tmp_path):
    recipe = one_fov_recipe(tmp_path, 1, ["raise KeyboardInterrupt()"])
    out, r = run_one_child(synthetic, recipe, tmp_path, "0-2", 3)
    assert r.code == 130, r
    assert r.last_line == "process-fov: interrupted"
    assert sorted(os.listdir(out)) == ["fov_000.csv", "fov_000.metrics.json", "fov_001.error.json", "fov_002.error.json"]
    assert error_record(out, 2) == {"fov": 2, "reason": "interrupted"}


# ---------------------------------------------------------------------------------------
# facts a recipe reports about its FOV (the registration shift): kept in its metrics file

# FOV 0 reports the largest of three round shifts, FOV 1 nothing, FOV 2 a shift, a count and three
# things that are not facts, then fails; what it says at import is no FOV's
FACTS_RECIPE = '''
import starfish_io

starfish_io.report_fov_facts(registration_shift_px=99.0, at_import=1)


def process_fov(fov_index, experiment_url):
    if fov_index == 0:
        shifts = [(0.0, 0.0), (3.0, 4.0), (-1.0, 1.0)]  # (dy, dx) per round
        starfish_io.report_fov_facts(registration_shift_px=starfish_io.registration_shift_px(shifts))
    if fov_index == 2:
        starfish_io.report_fov_facts(registration_shift_px=2.5, rounds=4, snr=float("nan"), flag=True,
                                     **{"Bad Name": 1})
        raise ValueError("no spots found in round 2")
    return [{"x": 1, "y": 2, "target": "ACTB"}]
'''


def test_what_a_recipe_reports_goes_into_its_fovs_metrics(synthetic, tmp_path):
    recipe = write(tmp_path / "facts.py", FACTS_RECIPE)
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **packed_env(synthetic, recipe, out, fovs_object(tmp_path, "0-2", perChild=3)))
    assert r.code == 1, r  # FOV 2's own failure; its bad facts failed nothing
    assert metrics_of(out, 0)["recipe_facts"] == {"registration_shift_px": 5.0}
    assert "recipe_facts" not in metrics_of(out, 1)          # nothing of FOV 0's, nor of the import
    assert metrics_of(out, 2)["recipe_facts"] == {"registration_shift_px": 2.5, "rounds": 4.0}  # failed, kept
    assert sorted(metrics_of(out, 2)) == ["cpu_seconds", "fov", "peak_rss_mib", "recipe_facts", "wall_seconds"]
    warnings = [line for line in r.stderr.splitlines() if "recipe fact left out" in line]
    assert warnings == [
        "process-fov: warning: FOV 2: recipe fact left out: snr=nan is not a finite number from -1e+12 to 1e+12",
        "process-fov: warning: FOV 2: recipe fact left out: flag=True is not a finite number from -1e+12 to 1e+12",
        "process-fov: warning: FOV 2: recipe fact left out: 'Bad Name' is not a fact name; use lower-case letters, "
        "digits and _, e.g. report_fov_facts(registration_shift_px=1.7)"]


@pytest.mark.parametrize("value, kept", [
    (1.23456, 1.235), (np.float32(2.5), 2.5), (np.int64(3), 3.0), (0, 0.0),
    (-1.0, None), (1e6, None), (float("inf"), None), ("1.5", None), (True, None), ([1, 2], None),
])
def test_a_registration_shift_is_kept_only_as_a_plausible_number_of_pixels(value, kept):
    sio.report_fov_facts(registration_shift_px=value)
    facts, problems = sio.take_fov_facts()
    assert facts == ({} if kept is None else {"registration_shift_px": kept})
    assert len(problems) == (1 if kept is None else 0)
    assert sio.take_fov_facts() == ({}, [])  # taken: the next FOV starts empty


def test_at_most_eight_facts_a_fov():
    sio.report_fov_facts(**{"f%d" % i: i for i in range(10)})
    facts, problems = sio.take_fov_facts()
    assert list(facts) == ["f%d" % i for i in range(8)]
    assert problems == ["f8 left out: at most 8 facts a FOV", "f9 left out: at most 8 facts a FOV"]


def test_the_registration_shift_of_starfish_s_transforms_list(standin):
    """LearnTransform.Translation's TransformsList, built as starfish builds it: each round's
    (dy, dx) from phase_cross_correlation, reversed into a SimilarityTransform's translation."""
    from skimage.transform import SimilarityTransform
    from starfish.core.image._registration.transforms_list import TransformsList
    from starfish.core.types import Axes, TransformType
    transforms = TransformsList()
    for r, shift in enumerate([(0.0, 0.0), (1.5, -2.0), (-0.25, 0.5)]):
        transforms.append({Axes.ROUND: r}, TransformType.SIMILARITY, SimilarityTransform(translation=np.array(shift)[::-1]))
    assert sio.registration_shift_px(transforms) == pytest.approx(2.5)
    assert sio.registration_shift_px([(3.0, 4.0), (0.0, 1.0)]) == 5.0  # per-round (dy, dx), as iss_numpy has them
    assert sio.registration_shift_px(TransformsList()) is None          # nothing registered: nothing to say


# the AWS tutorial's convention, registering as iss_starfish.py does (LearnTransform.Translation's
# TransformsList, reported with the same lines), returning the DecodedIntensityTable
TUTORIAL_REGISTERING_RECIPE = '''
import numpy as np
from skimage.transform import SimilarityTransform
from starfish import Codebook, DecodedIntensityTable, FieldOfView
from starfish.core.image._registration.transforms_list import TransformsList
from starfish.core.types import Axes, TransformType

try:
    from starfish_io import registration_shift_px, report_fov_facts
except ImportError:
    def registration_shift_px(transforms):
        return None

    def report_fov_facts(**facts):
        pass


def process_fov(fov: FieldOfView, codebook: Codebook) -> DecodedIntensityTable:
    transforms_list = TransformsList()
    n = int(fov.name[-3:])
    for r, shift in enumerate([(0.0, 0.0), (0.6 * n, 0.8 * n)]):  # FOV n: round 1 moved n px
        transforms_list.append({Axes.ROUND: r}, TransformType.SIMILARITY, SimilarityTransform(translation=np.array(shift)[::-1]))
    report_fov_facts(registration_shift_px=registration_shift_px(transforms_list))
    return DecodedIntensityTable({
        "radius": [1.5], "z": [1], "y": [20.0], "x": [10.0], "spot_id": [0], "features": [0],
        "xc": [100.0 * n + 5.0], "yc": [10.0], "zc": [0.5], "target": ["ACTB"], "distance": [0.1],
        "passes_thresholds": [True]})
'''


def test_tutorial_convention_then_merge_keeps_pixel_and_physical_coordinates_and_the_shift(synthetic, tmp_path):
    from conftest import MERGE_RESULTS
    recipe = write(tmp_path / "recipe.py", TUTORIAL_REGISTERING_RECIPE)
    out, results = str(tmp_path / "fovs"), str(tmp_path / "results")
    r = run_with_standin(packed_env(synthetic, recipe, out, fovs_object(tmp_path, "0-2", perChild=3)))
    assert r.code == 0, r
    r = run_script(MERGE_RESULTS, STARFISH_RUN_ID=RUN_ID, STARFISH_FOVS="0-2", STARFISH_FOV_OUTPUT=out,
                   STARFISH_RESULTS_OUTPUT=results)
    assert r.code == 0, r
    spots = read_csv(os.path.join(results, "spots.csv"))
    assert spots[0][:9] == ["fov", "x", "y", "z", "target", "quality", "xc", "yc", "zc"]
    assert [row[:9] for row in spots[1:]] == [
        [str(n), "10.00", "20.00", "1", "ACTB", "0.900", "%g" % (100.0 * n + 5.0), "10", "0.5"] for n in range(3)]
    quality = read_csv(os.path.join(results, "fov_quality.csv"))
    assert [row[6] for row in quality] == ["registration_shift_px", "0", "1", "2"]


# a recipe's facts are its own objects: converting them runs its code, which may raise anywhere
HOSTILE_FACTS_RECIPE = '''
import starfish_io


class Lying(float):
    def __float__(self):
        raise RuntimeError("no float today")

    def __repr__(self):
        raise RuntimeError("no repr either")


class NoClass:
    @property
    def __class__(self):
        raise RuntimeError("who am I")


def process_fov(fov_index, experiment_url):
    starfish_io.report_fov_facts(registration_shift_px=Lying(2.0), odd=NoClass(), rounds=4)
    return [{"x": 1, "y": 2, "target": "ACTB"}]
'''


def test_facts_whose_conversion_raises_are_left_out_and_every_fov_still_runs(synthetic, tmp_path):
    recipe = write(tmp_path / "hostile.py", HOSTILE_FACTS_RECIPE)
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **packed_env(synthetic, recipe, out, fovs_object(tmp_path, "0-1", perChild=2)))
    assert r.code == 0, r
    for fov in (0, 1):
        assert os.path.exists(os.path.join(out, "fov_%03d.csv" % fov))
        assert metrics_of(out, fov)["recipe_facts"] == {"rounds": 4.0}
    warnings = [line for line in r.stderr.splitlines() if "FOV 1: recipe fact left out" in line]
    assert warnings[0] == ("process-fov: warning: FOV 1: recipe fact left out: registration_shift_px=a Lying is "
                           "not a number of pixels from 0 to 100000, e.g. 1.7")
    assert re.fullmatch(r"process-fov: warning: FOV 1: recipe fact left out: odd=<recipe\.NoClass object at "
                        r"0x[0-9a-f]+> is not a finite number from -1e\+12 to 1e\+12", warnings[1]), warnings
    assert len(warnings) == 2


def test_a_flood_of_bad_fact_names_is_counted_not_written_out_and_the_good_fact_stays():
    sio.report_fov_facts(**{"Bad %d" % i: 1 for i in range(100000)}, registration_shift_px=2.5)
    facts, problems = sio.take_fov_facts()
    assert facts == {"registration_shift_px": 2.5}
    assert len(problems) == 100000  # what process-fov's "... and 99995 more" counts
    assert problems[sio.MAX_FACT_PROBLEMS - 1].startswith("'Bad %d' is not a fact name" % (sio.MAX_FACT_PROBLEMS - 1))
    assert set(problems[sio.MAX_FACT_PROBLEMS:]) == {sio.UNLISTED_PROBLEM}


def _endless_rounds():
    while True:
        yield (1.0, 1.0)


class _BrokenTransforms:
    @property
    def transforms(self):
        raise KeyError("lost")


@pytest.mark.parametrize("transforms, why", [
    (_endless_rounds(), "ValueError: it has more than 1000 rounds"),
    ([(0.0, 0.0), (float("nan"), 1.0), (3.0, 4.0)], "ValueError: round 1's shift is [nan, 1.0]"),
    ([(0.0, 0.0), np.zeros(10 ** 7)], "ValueError: round 1's shift has more than 3 axes, not 1 to 3"),
    ([()], "ValueError: round 0's shift has no axes, not 1 to 3"),
    ("1.5", "ValueError: it is text, not a list of shifts"),
    (2.5, "TypeError: 'float' object is not iterable"),
    (_BrokenTransforms(), "KeyError: 'lost'"),
])
def test_a_registration_shift_that_cannot_be_measured_is_none_and_a_warning(transforms, why, capsys):
    assert sio.registration_shift_px(transforms) is None
    assert capsys.readouterr().err == (
        "starfish_io: warning: registration_shift_px left out: %s (give it starfish's TransformsList or "
        "per-round shifts, e.g. [(0.0, 0.0), (1.5, -2.0)])\n" % why)
