"""process-fov: output table, FOV selection, and one-line failure reasons (as subprocesses)."""
import csv
import json
import os
import re

import numpy as np
import pytest

from conftest import NUMPY_RECIPE, PROCESS_FOV, RUN_ID, run_script

import process_fov as pf
import starfish_io as sio

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
    assert rows[0] == ["fov", "x", "y", "z", "target", "quality"]
    assert len(rows) - 1 >= 76  # 80 spots in the ground truth of this FOV
    for row in rows[1:]:
        assert row[0] == "1"
        assert re.match(r"^-?\d+\.\d\d$", row[1]) and re.match(r"^-?\d+\.\d\d$", row[2]), row
        assert re.match(r"^-?\d+$", row[3]), row
        assert row[4]
        assert re.match(r"^[01]\.\d\d\d$", row[5]) and 0 <= float(row[5]) <= 1, row
    assert not os.path.exists(os.path.join(out, "fov_001.error.json"))
    # no temp files left behind by the atomic write
    assert sorted(os.listdir(out)) == ["fov_001.csv"]


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
    assert sorted(os.listdir(out)) == ["fov_000.csv", "fov_002.csv", "fov_003.csv"]


def test_a_plain_job_is_child_0_of_its_single_fov(synthetic, fake_recipe, tmp_path):
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic, fake_recipe, out, STARFISH_FOVS="3"))
    assert r.code == 0, r
    assert os.listdir(out) == ["fov_003.csv"]
    assert read_csv(os.path.join(out, "fov_003.csv"))[1][4] == "GENE_3"


def test_writes_only_under_the_fov_output(synthetic, fake_recipe, tmp_path):
    """The job is given its output location; it builds no run prefix or fovs/ folder of its own."""
    out = str(tmp_path / "outputs" / RUN_ID / "fovs")
    r = run_script(PROCESS_FOV, **env_for(synthetic, fake_recipe, out + "/", AWS_BATCH_JOB_ARRAY_INDEX="1"))
    assert r.code == 0, r
    written = sorted(os.path.relpath(os.path.join(d, f), str(tmp_path))
                     for d, _, files in os.walk(str(tmp_path)) for f in files)
    assert written == ["fake_recipe.py", os.path.join("outputs", RUN_ID, "fovs", "fov_001.csv")]


@pytest.mark.parametrize("index, fov", [(0, 1), (1, 2), (2, 3), (3, 7), (4, 9), (5, 10), (7, 12)])
def test_resolve_fov_indexes_into_the_ranges(index, fov):
    env = {"STARFISH_FOVS": "1-3,7,9-12", "AWS_BATCH_JOB_ARRAY_INDEX": str(index)}
    assert pf.resolve_fov(env) == fov


def test_resolve_fov_on_a_huge_selection_never_expands_it():
    env = {"STARFISH_FOVS": "0-999999,1000000", "AWS_BATCH_JOB_ARRAY_INDEX": "999999"}
    assert pf.resolve_fov(env) == 999999
    env["AWS_BATCH_JOB_ARRAY_INDEX"] = "1000000"
    assert pf.resolve_fov(env) == 1000000
    assert sio.parse_fov_ranges(env["STARFISH_FOVS"]).ranges == ((0, 1000000),)
    assert pf.resolve_fov({"STARFISH_FOVS": "5"}) == 5  # a plain job has no array index


def test_success_clears_previous_error_record(synthetic, fake_recipe, tmp_path):
    out = str(tmp_path / "fovs")
    os.makedirs(out)
    write(os.path.join(out, "fov_002.error.json"), '{"fov": 2, "reason": "old failure"}')
    r = run_script(PROCESS_FOV, **env_for(synthetic, fake_recipe, out, AWS_BATCH_JOB_ARRAY_INDEX="2"))
    assert r.code == 0, r
    assert os.listdir(out) == ["fov_002.csv"]


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
    assert r.last_line == "process-fov: FOV 3: tile not found: %s" % tile
    assert error_record(out, 3) == {"fov": 3, "reason": "FOV 3: tile not found: %s" % tile}
    assert not os.path.exists(os.path.join(out, "fov_003.csv"))


def test_missing_tile_detected_by_recipe_itself(synthetic_copy, tmp_path):
    """A tile that disappears after the pre-flight check: the recipe's FileNotFoundError
    is still reported as 'tile not found'."""
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
    assert r.last_line == "process-fov: FOV 0: tile not found: %s" % tile
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
     "process-fov: FOV 7 (fov_007) is not in the experiment (primary images have 4 FOVs: fov_000..fov_003)"),
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
    assert r.last_line == "process-fov: recipe %s does not define process_fov(fov_index, experiment_url)" % recipe


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
# accepted return values (in-process)

class FakeFrame(object):
    """Quacks like a pandas DataFrame (pandas is not installed here)."""

    def __init__(self, cols):
        self._cols = cols
        self.columns = list(cols)

    def __getitem__(self, k):
        return self._cols[k]

    def __len__(self):
        return len(next(iter(self._cols.values())))


class FakeDecodedIntensityTable(object):
    def __init__(self, frame):
        self.frame = frame

    def to_features_dataframe(self):
        return self.frame


class FakeDecodedSpots(object):
    def __init__(self, frame):
        self.data = frame


def test_to_rows_list_of_dicts():
    rows = pf.to_rows(5, [{"x": 1, "y": 2, "target": "A"}, {"x": 3.333, "y": 4, "z": 1.0, "target": "B",
                                                            "quality": 1.7}])
    assert rows == [(5, "1.00", "2.00", 0, "A", "1.000"), (5, "3.33", "4.00", 1, "B", "1.000")]


def test_to_rows_structured_array():
    arr = np.array([(1.5, 2.5, 0, b"ACTB", 0.25), (3.0, 4.0, 2, b"VIM", 0.75)],
                   dtype=[("x", "f8"), ("y", "f8"), ("z", "i4"), ("target", "U8"), ("quality", "f4")])
    arr = arr.astype([("x", "f8"), ("y", "f8"), ("z", "i4"), ("target", "U8"), ("quality", "f4")])
    rows = pf.to_rows(0, arr)
    assert rows == [(0, "1.50", "2.50", 0, "ACTB", "0.250"), (0, "3.00", "4.00", 2, "VIM", "0.750")]


def test_to_rows_decoded_intensity_table_uses_distance_and_thresholds():
    frame = FakeFrame({"x": [10, 20, 30, 40], "y": [1, 2, 3, 4], "z": [0, 0, 1, 0],
                       "target": ["ACTB", "nan", "VIM", "KRT8"], "distance": [0.1, 0.2, 0.3, 0.0],
                       "passes_thresholds": [True, True, True, False]})
    rows = pf.to_rows(3, FakeDecodedIntensityTable(frame))
    # undecoded ('nan') and failed-threshold features are dropped; quality = 1 - distance
    assert rows == [(3, "10.00", "1.00", 0, "ACTB", "0.900"), (3, "30.00", "3.00", 1, "VIM", "0.700")]


def test_to_rows_dataframe_and_decoded_spots():
    frame = FakeFrame({"x": [1.0], "y": [2.0], "target": ["A"], "intensity": [0.4]})
    assert pf.to_rows(1, frame) == [(1, "1.00", "2.00", 0, "A", "0.400")]
    assert pf.to_rows(1, FakeDecodedSpots(frame)) == [(1, "1.00", "2.00", 0, "A", "0.400")]


def test_to_rows_rejects_missing_columns_and_bad_coordinates():
    with pytest.raises(ValueError, match="needs x, y and target"):
        pf.to_rows(0, [{"x": 1, "y": 2}])
    with pytest.raises(ValueError, match="non-finite"):
        pf.to_rows(0, [{"x": float("nan"), "y": 2, "target": "A"}])
    with pytest.raises(TypeError):
        pf.to_rows(0, None)


def test_render_csv_quotes_awkward_targets():
    text = pf.render_csv(pf.to_rows(0, [{"x": 1, "y": 2, "target": "HLA-A, HLA-B"}]))
    assert text == 'fov,x,y,z,target,quality\n0,1.00,2.00,0,"HLA-A, HLA-B",1.000\n'
