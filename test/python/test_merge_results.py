"""merge-results: merged table equals its inputs, summary, missing FOVs, exit codes."""
import collections
import csv
import io
import json
import os
import random

import pytest

from conftest import MERGE_RESULTS, NUMPY_RECIPE, PROCESS_FOV, run_script

import merge_results as mr
import starfish_io

HEADER = ["fov", "x", "y", "z", "target", "quality"]
GENES = ["ACTB", "GAPDH", "VIM", "KRT8", "HLA-A, HLA-B"]


def write_table(out, fov, rows):
    d = os.path.join(out, "fovs")
    os.makedirs(d, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows(rows)
    with open(os.path.join(d, "fov_%03d.csv" % fov), "w") as fh:
        fh.write(buf.getvalue())


def random_rows(fov, n, rnd):
    return [[str(fov), "%.2f" % rnd.uniform(0, 256), "%.2f" % rnd.uniform(0, 256), str(rnd.randint(0, 2)),
             rnd.choice(GENES), "%.3f" % rnd.random()] for _ in range(n)]


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def summary_of(out):
    with open(os.path.join(out, "results", "summary.json")) as fh:
        return json.load(fh)


def test_merge_equals_inputs(tmp_path):
    out = str(tmp_path / "run")
    rnd = random.Random(1)
    inputs = {}
    for fov in (12, 0, 3, 1, 2, 1000):   # written out of order; 1000 -> fov_1000.csv
        inputs[fov] = random_rows(fov, rnd.randint(0, 40), rnd)
        write_table(out, fov, inputs[fov])
    inputs[4] = []
    write_table(out, 4, [])               # a FOV with no spots is processed, not missing
    r = run_script(MERGE_RESULTS, STARFISH_OUTPUT=out, STARFISH_EXPECTED_FOVS="0-4,12,1000")
    assert r.code == 0, r

    merged = read_rows(os.path.join(out, "results", "spots.csv"))
    assert merged[0] == HEADER
    expected_rows = [row for fov in sorted(inputs) for row in inputs[fov]]
    assert merged[1:] == expected_rows  # row for row, sorted by fov then row order

    s = summary_of(out)
    assert list(s) == ["fovs_expected", "fovs_processed", "fovs_missing", "failures", "spots_total",
                       "spots_per_fov", "counts_per_gene"]
    assert s["fovs_expected"] == 7 and s["fovs_processed"] == 7
    assert s["fovs_missing"] == [] and s["failures"] == {}
    assert s["spots_total"] == len(expected_rows)
    assert s["spots_per_fov"] == {str(f): len(inputs[f]) for f in inputs}
    counts = collections.Counter(row[4] for row in expected_rows)
    assert s["counts_per_gene"] == dict(counts)
    values = list(s["counts_per_gene"].values())
    assert values == sorted(values, reverse=True)
    assert sum(values) == s["spots_total"]
    with open(os.path.join(out, "results", "spots.png"), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_missing_fovs_are_reported(tmp_path):
    out = str(tmp_path / "run")
    rnd = random.Random(2)
    for fov in (0, 1, 3):
        write_table(out, fov, random_rows(fov, 5, rnd))
    with open(os.path.join(out, "fovs", "fov_002.error.json"), "w") as fh:
        json.dump({"fov": 2, "reason": "FOV 2: recipe raised ValueError: no spots found in round 2"}, fh)
    r = run_script(MERGE_RESULTS, STARFISH_OUTPUT=out, STARFISH_EXPECTED_FOVS="0-4")
    assert r.code == 0, r  # partial results are still results
    s = summary_of(out)
    assert s["fovs_expected"] == 5 and s["fovs_processed"] == 3
    assert s["fovs_missing"] == [2, 4]
    assert s["failures"] == {"2": "FOV 2: recipe raised ValueError: no spots found in round 2",
                             "4": "no output table"}
    assert s["spots_total"] == 15
    assert "FOV 2 missing: FOV 2: recipe raised ValueError: no spots found in round 2" in r.stderr
    assert "FOV 4 missing: no output table" in r.stderr


def test_table_wins_over_stale_error_record(tmp_path):
    out = str(tmp_path / "run")
    write_table(out, 0, random_rows(0, 3, random.Random(3)))
    with open(os.path.join(out, "fovs", "fov_000.error.json"), "w") as fh:
        json.dump({"fov": 0, "reason": "earlier attempt failed"}, fh)
    r = run_script(MERGE_RESULTS, STARFISH_OUTPUT=out, STARFISH_EXPECTED_FOVS="0")
    assert r.code == 0, r
    assert summary_of(out)["failures"] == {}


def test_malformed_table_is_a_failure_not_a_crash(tmp_path):
    out = str(tmp_path / "run")
    write_table(out, 0, random_rows(0, 3, random.Random(4)))
    with open(os.path.join(out, "fovs", "fov_001.csv"), "w") as fh:
        fh.write("fov,x,y\n1,2,3\n")
    r = run_script(MERGE_RESULTS, STARFISH_OUTPUT=out, STARFISH_EXPECTED_FOVS="0-1")
    assert r.code == 0, r
    s = summary_of(out)
    assert s["fovs_missing"] == [1]
    assert s["failures"]["1"].startswith("malformed output table fov_001.csv: bad header")


def test_no_tables_at_all(tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(os.path.join(out, "fovs"))
    with open(os.path.join(out, "fovs", "fov_000.error.json"), "w") as fh:
        json.dump({"fov": 0, "reason": "FOV 0: tile not found: /x.tiff"}, fh)
    r = run_script(MERGE_RESULTS, STARFISH_OUTPUT=out, STARFISH_EXPECTED_FOVS="0-1")
    assert r.code == 1, r
    assert r.last_line == "merge-results: no FOV tables found under %s" % os.path.join(out, "fovs")
    s = summary_of(out)  # the summary is still written, so the reasons can be reported
    assert s["fovs_processed"] == 0 and s["failures"] == {"0": "FOV 0: tile not found: /x.tiff",
                                                          "1": "no output table"}


def test_output_directory_absent(tmp_path):
    out = str(tmp_path / "never-created")
    r = run_script(MERGE_RESULTS, STARFISH_OUTPUT=out, STARFISH_EXPECTED_FOVS="0-3")
    assert r.code == 1, r
    assert r.last_line == "merge-results: no FOV tables found under %s" % os.path.join(out, "fovs")


@pytest.mark.parametrize("env, message", [
    ({"STARFISH_EXPECTED_FOVS": "0-3"}, "merge-results: STARFISH_OUTPUT is not set; example: "),
    ({"STARFISH_OUTPUT": "OUT"}, "merge-results: STARFISH_EXPECTED_FOVS is not set; example: "),
    ({"STARFISH_OUTPUT": "OUT", "STARFISH_EXPECTED_FOVS": "3-1"},
     "merge-results: STARFISH_EXPECTED_FOVS must be a range list like 0-3 or 1-3,7,9-12: bad range '3-1'"),
    ({"STARFISH_OUTPUT": "OUT", "STARFISH_EXPECTED_FOVS": "0-3,x"},
     "merge-results: STARFISH_EXPECTED_FOVS must be a range list like 0-3 or 1-3,7,9-12: bad FOV index 'x'"),
])
def test_bad_environment(tmp_path, env, message):
    env = {k: (str(tmp_path) if v == "OUT" else v) for k, v in env.items()}
    r = run_script(MERGE_RESULTS, **env)
    assert r.code == 2, r
    assert r.last_line.startswith(message), r.last_line
    assert "Traceback" not in r.stderr


def test_range_lists():
    assert starfish_io.parse_fov_ranges("0-3") == [0, 1, 2, 3]
    assert starfish_io.parse_fov_ranges(" 1-3, 7 ,9-12") == [1, 2, 3, 7, 9, 10, 11, 12]
    assert len(starfish_io.parse_fov_ranges("0-9999")) == 10000
    assert starfish_io.parse_fov_ranges("5,5,4") == [4, 5]
    for bad in ("", "a", "1-", "-1", "3-1", "1,,2", "0-99999999"):
        with pytest.raises(ValueError):
            starfish_io.parse_fov_ranges(bad)
    assert starfish_io.format_fov_ranges([9, 1, 2, 3, 7, 10]) == "1-3,7,9-10"


def test_many_panels_are_capped(tmp_path):
    out = str(tmp_path / "run")
    rnd = random.Random(5)
    for fov in range(100):
        write_table(out, fov, random_rows(fov, 3, rnd))
    summary, code = mr.merge(out, list(range(100)), log=lambda m: None)
    assert code == 0 and summary["fovs_processed"] == 100 and summary["spots_total"] == 300
    assert os.path.getsize(os.path.join(out, "results", "spots.png")) > 10000


def test_end_to_end_process_then_merge(synthetic, tmp_path):
    """process-fov (numpy recipe) on FOVs 0-2 of the synthetic experiment, then merge 0-3."""
    out = str(tmp_path / "run")
    for index in range(3):
        r = run_script(PROCESS_FOV, STARFISH_EXPERIMENT=synthetic, STARFISH_RECIPE=NUMPY_RECIPE,
                       STARFISH_OUTPUT=out, AWS_BATCH_JOB_ARRAY_INDEX=str(index))
        assert r.code == 0, r
    r = run_script(MERGE_RESULTS, STARFISH_OUTPUT=out, STARFISH_EXPECTED_FOVS="0-3")
    assert r.code == 0, r
    s = summary_of(out)
    assert s["fovs_processed"] == 3 and s["fovs_missing"] == [3] and s["failures"] == {"3": "no output table"}
    per_fov = [read_rows(os.path.join(out, "fovs", "fov_%03d.csv" % f))[1:] for f in range(3)]
    merged = read_rows(os.path.join(out, "results", "spots.csv"))[1:]
    assert merged == per_fov[0] + per_fov[1] + per_fov[2]
    assert s["spots_total"] == len(merged) >= 228
