"""merge-results: merged table equals its inputs, summary, missing FOVs, exit codes."""
import collections
import csv
import hashlib
import io
import json
import os
import random
import sys

import pytest

from conftest import MERGE_RESULTS, NUMPY_RECIPE, PROCESS_FOV, RUN_ID, run_script

import merge_results as mr
import starfish_io

HEADER = ["fov", "x", "y", "z", "target", "quality"]
RESULT_FILES = ["counts_matrix.csv", "fov_quality.csv", "overview.png", "spots.csv", "spots.png", "summary.json"]
GENES = ["ACTB", "GAPDH", "VIM", "KRT8", "HLA-A, HLA-B"]


def write_table(out, fov, rows):
    """A FOV table as process-fov writes it under the FOV output location ``out``."""
    d = out
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


def summary_of(results):
    with open(os.path.join(results, "summary.json")) as fh:
        return json.load(fh)


def locations(tmp_path):
    """(FOV output, results output): two unrelated folders, so nothing can be derived."""
    return str(tmp_path / "outputs" / RUN_ID / "fovs"), str(tmp_path / "elsewhere" / "results")


def merge_env(fovs_out, results, fovs):
    return {"STARFISH_RUN_ID": RUN_ID, "STARFISH_FOVS": fovs, "STARFISH_FOV_OUTPUT": fovs_out,
            "STARFISH_RESULTS_OUTPUT": results}


def test_merge_equals_inputs(tmp_path):
    out, results = locations(tmp_path)
    rnd = random.Random(1)
    inputs = {}
    for fov in (12, 0, 3, 1, 2, 1000):   # written out of order; 1000 -> fov_1000.csv
        inputs[fov] = random_rows(fov, rnd.randint(0, 40), rnd)
        write_table(out, fov, inputs[fov])
    inputs[4] = []
    write_table(out, 4, [])               # a FOV with no spots is processed, not missing
    tables_before = sorted(os.listdir(out))
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-4,12,1000"))
    assert r.code == 0, r

    # reads STARFISH_FOV_OUTPUT, writes STARFISH_RESULTS_OUTPUT, and nothing else
    assert sorted(os.listdir(out)) == tables_before
    assert sorted(os.listdir(results)) == RESULT_FILES
    assert sorted(os.listdir(str(tmp_path))) == ["elsewhere", "outputs"]
    assert "merge-results: run %s: merged 7/7 FOVs" % RUN_ID in r.stdout

    merged = read_rows(os.path.join(results, "spots.csv"))
    assert merged[0] == HEADER
    expected_rows = [row for fov in sorted(inputs) for row in inputs[fov]]
    assert merged[1:] == expected_rows  # row for row, sorted by fov then row order

    s = summary_of(results)
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
    with open(os.path.join(results, "spots.png"), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_missing_fovs_are_reported(tmp_path):
    out, results = locations(tmp_path)
    rnd = random.Random(2)
    for fov in (0, 1, 3):
        write_table(out, fov, random_rows(fov, 5, rnd))
    with open(os.path.join(out, "fov_002.error.json"), "w") as fh:
        json.dump({"fov": 2, "reason": "FOV 2: recipe raised ValueError: no spots found in round 2"}, fh)
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-4"))
    assert r.code == 0, r  # partial results are still results
    s = summary_of(results)
    assert s["fovs_expected"] == 5 and s["fovs_processed"] == 3
    assert s["fovs_missing"] == [2, 4]
    assert s["failures"] == {"2": "FOV 2: recipe raised ValueError: no spots found in round 2",
                             "4": "no output table"}
    assert s["spots_total"] == 15
    assert "FOV 2 missing: FOV 2: recipe raised ValueError: no spots found in round 2" in r.stderr
    assert "FOV 4 missing: no output table" in r.stderr


def test_a_hostile_error_record_is_not_read_whole_and_its_reason_is_one_capped_line(tmp_path):
    """Error records are job-written like the metrics: a huge one is not read whole (its FOV is
    failed with the unreadable-record reason), a long reason with terminal escapes is one line of
    at most 600 characters in summary.json."""
    out, results = locations(tmp_path)
    write_table(out, 0, random_rows(0, 2, random.Random(3)))
    write_fov_file(out, 1, ".error.json", json.dumps({"fov": 1, "reason": "x" * (8 << 20)}))
    write_fov_file(out, 2, ".error.json", json.dumps({"fov": 2, "reason": "\x1b[2Jboom\x00 " + "y" * 2000}))
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-2"))
    assert r.code == 0, r
    failures = summary_of(results)["failures"]
    assert failures["1"] == "failed (error record unreadable)"
    assert failures["2"] == "[2Jboom " + "y" * 589 + "..."
    assert len(failures["2"]) == 600


def test_expected_fovs_are_the_ranges_not_their_text(tmp_path):
    """Overlapping, unordered ranges count each FOV once; tables outside them are merged too."""
    out, results = locations(tmp_path)
    rnd = random.Random(6)
    for fov in (1, 2, 7, 9, 20):
        write_table(out, fov, random_rows(fov, 2, rnd))
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "9-12,1-3,2,7"))
    assert r.code == 0, r
    s = summary_of(results)
    assert s["fovs_expected"] == 8  # 1, 2, 3, 7, 9, 10, 11, 12
    assert s["fovs_processed"] == 5
    assert s["fovs_missing"] == [3, 10, 11, 12]
    assert "note: 1 FOV table(s) not in STARFISH_FOVS were merged too: 20" in r.stderr


def test_table_wins_over_stale_error_record(tmp_path):
    out, results = locations(tmp_path)
    write_table(out, 0, random_rows(0, 3, random.Random(3)))
    with open(os.path.join(out, "fov_000.error.json"), "w") as fh:
        json.dump({"fov": 0, "reason": "earlier attempt failed"}, fh)
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0"))
    assert r.code == 0, r
    assert summary_of(results)["failures"] == {}


def test_malformed_table_is_a_failure_not_a_crash(tmp_path):
    out, results = locations(tmp_path)
    write_table(out, 0, random_rows(0, 3, random.Random(4)))
    with open(os.path.join(out, "fov_001.csv"), "w") as fh:
        fh.write("fov,x,y\n1,2,3\n")
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-1"))
    assert r.code == 0, r
    s = summary_of(results)
    assert s["fovs_missing"] == [1]
    assert s["failures"]["1"].startswith("malformed output table fov_001.csv: bad header")


def test_no_tables_at_all(tmp_path):
    out, results = locations(tmp_path)
    os.makedirs(out)
    with open(os.path.join(out, "fov_000.error.json"), "w") as fh:
        json.dump({"fov": 0, "reason": "FOV 0: tile not found: /x.tiff"}, fh)
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-1"))
    assert r.code == 1, r
    assert r.last_line == "merge-results: no FOV tables found under %s" % out
    s = summary_of(results)  # the summary is still written, so the reasons can be reported
    assert s["fovs_processed"] == 0 and s["failures"] == {"0": "FOV 0: tile not found: /x.tiff",
                                                          "1": "no output table"}
    # the quality table says why each FOV is missing; there is nothing to count or to draw
    assert sorted(os.listdir(results)) == ["fov_quality.csv", "spots.csv", "summary.json"]
    assert read_rows(os.path.join(results, "fov_quality.csv"))[1:] == [
        ["0", "failed", "", "", "", "", "", "FOV 0: tile not found: /x.tiff"],
        ["1", "no output", "", "", "", "", "", "no output table"]]


def test_fov_output_absent(tmp_path):
    out, results = locations(tmp_path)
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-3"))
    assert r.code == 1, r
    assert r.last_line == "merge-results: no FOV tables found under %s" % out
    assert summary_of(results)["fovs_missing"] == [0, 1, 2, 3]
    assert not os.path.exists(out)


BAD_FOVS = "merge-results: STARFISH_FOVS must be FOV indices and ranges like 0-9999 or 1-3,7,9-12, got "


@pytest.mark.parametrize("drop, change, message", [
    ("STARFISH_RUN_ID", {}, "merge-results: STARFISH_RUN_ID is not set; example: STARFISH_RUN_ID=261125-k3f9"),
    ("STARFISH_FOVS", {}, "merge-results: STARFISH_FOVS is not set; example: STARFISH_FOVS=0-9999 (or 1-3,7,9-12)"),
    ("STARFISH_FOV_OUTPUT", {}, "merge-results: STARFISH_FOV_OUTPUT is not set; example: "
                                "STARFISH_FOV_OUTPUT=s3://lab-starfish-results/outputs/261125-k3f9/fovs"),
    ("STARFISH_RESULTS_OUTPUT", {}, "merge-results: STARFISH_RESULTS_OUTPUT is not set; example: "
                                    "STARFISH_RESULTS_OUTPUT=s3://lab-starfish-results/outputs/261125-k3f9/results"),
    (None, {"STARFISH_FOVS": "3-1"}, BAD_FOVS + "'3-1': the range '3-1' runs backwards; write it low-high, like 1-3"),
    (None, {"STARFISH_FOVS": "0-3,x"}, BAD_FOVS + "'0-3,x': 'x' is not a FOV index or range"),
    (None, {"STARFISH_FOVS": "0-3;7"}, BAD_FOVS + "'0-3;7': '0-3;7' is not a FOV index or range"),
    ("STARFISH_FOVS", {"STARFISH_EXPECTED_FOVS": "0-3"},
     "merge-results: STARFISH_FOVS is not set; example: STARFISH_FOVS=0-9999 (or 1-3,7,9-12) "
     "(STARFISH_EXPECTED_FOVS is no longer read: the launcher and this image disagree on the contract)"),
    ("STARFISH_RESULTS_OUTPUT", {"STARFISH_OUTPUT": "OUT"},
     "merge-results: STARFISH_RESULTS_OUTPUT is not set; example: "
     "STARFISH_RESULTS_OUTPUT=s3://lab-starfish-results/outputs/261125-k3f9/results "
     "(STARFISH_OUTPUT is no longer read: the launcher and this image disagree on the contract)"),
])
def test_bad_environment(tmp_path, drop, change, message):
    out, results = locations(tmp_path)
    write_table(out, 0, random_rows(0, 3, random.Random(7)))
    env = merge_env(out, results, "0-3")
    env.update({k: (str(tmp_path / "old-run") if v == "OUT" else v) for k, v in change.items()})
    if drop:
        del env[drop]
    r = run_script(MERGE_RESULTS, **env)
    assert r.code == 2, r
    assert r.last_line == message
    assert "Traceback" not in r.stderr
    assert not os.path.exists(results)


@pytest.mark.parametrize("fovs, panels", [("0-15", True), ("0-16", False), ("0-99", False),
                                          ("0-12,14", True), ("0-14,100", True)])  # FOV 100 found, not expected
def test_per_fov_panels_only_for_a_small_run(tmp_path, fovs, panels):
    """spots.png (a panel per FOV) for at most 16 FOVs in STARFISH_FOVS, with a found one when all fit; overview.png always."""
    out, results = locations(tmp_path)
    rnd = random.Random(5)
    for fov in starfish_io.parse_fov_ranges(fovs):
        write_table(out, fov, random_rows(fov, 3, rnd))
    expected = starfish_io.parse_fov_ranges(fovs.replace(",100", ""))
    summary, code = mr.merge(out, results, expected, log=lambda m: None)
    assert code == 0 and summary["spots_total"] == 3 * summary["fovs_processed"]
    names = sorted(os.listdir(results))
    assert ("spots.png" in names) == panels
    assert names == sorted(RESULT_FILES if panels else set(RESULT_FILES) - {"spots.png"})
    with open(os.path.join(results, "overview.png"), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_small_run_keeps_its_panels_whatever_other_tables_its_folder_holds(tmp_path):
    # the control plane requires spots.png of a run of at most 16 FOVs (its plan says so): tables of
    # 20 other FOVs written into the run's folder (by a job; merged too) do not take it away
    out, results = locations(tmp_path)
    rnd = random.Random(5)
    for fov in list(range(4)) + list(range(100, 120)):
        write_table(out, fov, random_rows(fov, 3, rnd))
    logged = []
    summary, code = mr.merge(out, results, starfish_io.parse_fov_ranges("0-3"), log=logged.append)
    assert code == 0 and summary["fovs_processed"] == 24
    assert sorted(os.listdir(results)) == sorted(RESULT_FILES)
    assert "note: 20 FOV table(s) not in STARFISH_FOVS were merged too: 100-119" in logged


def test_a_larger_fov_list_removes_the_earlier_small_runs_panels(tmp_path):
    out, results = locations(tmp_path)
    rnd = random.Random(5)
    for fov in range(20):
        if fov == 4:
            assert mr.merge(out, results, starfish_io.parse_fov_ranges("0-3"), log=lambda m: None)[1] == 0
            assert os.path.exists(os.path.join(results, "spots.png"))
        write_table(out, fov, random_rows(fov, 3, rnd))
    assert mr.merge(out, results, starfish_io.parse_fov_ranges("0-19"), log=lambda m: None)[1] == 0
    assert sorted(os.listdir(results)) == sorted(set(RESULT_FILES) - {"spots.png"})


def test_end_to_end_process_then_merge(synthetic, tmp_path):
    """process-fov (numpy recipe) on FOVs 0-2 of the synthetic experiment, then merge 0-3."""
    out, results = locations(tmp_path)
    for index in range(3):
        r = run_script(PROCESS_FOV, STARFISH_RUN_ID=RUN_ID, STARFISH_EXPERIMENT=synthetic,
                       STARFISH_RECIPE=NUMPY_RECIPE, STARFISH_FOVS="0-2", STARFISH_FOV_OUTPUT=out,
                       AWS_BATCH_JOB_ARRAY_INDEX=str(index))
        assert r.code == 0, r
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-3"))
    assert r.code == 0, r
    s = summary_of(results)
    assert s["fovs_processed"] == 3 and s["fovs_missing"] == [3] and s["failures"] == {"3": "no output table"}
    per_fov = [read_rows(os.path.join(out, "fov_%03d.csv" % f))[1:] for f in range(3)]
    merged = read_rows(os.path.join(results, "spots.csv"))[1:]
    assert merged == per_fov[0] + per_fov[1] + per_fov[2]
    assert s["spots_total"] == len(merged) >= 228
    # the tables a biologist opens agree with the spots
    matrix = read_rows(os.path.join(results, "counts_matrix.csv"))
    assert matrix[0] == ["target", "fov_000", "fov_001", "fov_002"]
    assert [sum(int(row[k]) for row in matrix[1:]) for k in (1, 2, 3)] == [len(t) for t in per_fov]
    quality = read_rows(os.path.join(results, "fov_quality.csv"))
    assert [row[:3] for row in quality[1:]] == [["0", "processed", str(len(per_fov[0]))],
                                               ["1", "processed", str(len(per_fov[1]))],
                                               ["2", "processed", str(len(per_fov[2]))], ["3", "no output", ""]]
    assert all(row[3] and row[4] and row[5] for row in quality[1:4])  # quality and the jobs' own metrics
    # the numpy recipe registers every round and reports the largest shift (easy data: up to 5 px an axis)
    assert quality[0][6] == "registration_shift_px"
    assert all(0 < float(row[6]) <= 5 * 2 ** 0.5 + 0.5 for row in quality[1:4]) and quality[4][6] == ""
    # each spot in pixels (x, y, z) and at its stage position (xc, yc, zc)
    spots_header = read_rows(os.path.join(results, "spots.csv"))[0]
    assert spots_header[:9] == HEADER + ["xc", "yc", "zc"]
    assert all(all(cell != "" for cell in row[1:9]) for row in merged)
    assert sorted(os.listdir(results)) == RESULT_FILES
    # the numpy recipe gives starfish's physical xc, yc: the overview places the FOVs by them
    table = mr.parse_table(0, open(os.path.join(out, "fov_000.csv")).read(), False, 10)
    assert table.overview_physical


# ---------------------------------------------------------------------------------------
# columns beyond the six: starfish's physical coordinates and whatever else the recipes returned

def write_fov_file(out, fov, suffix, text):
    """fov_NNN<suffix> under the FOV output location ``out``, holding ``text`` as written."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "fov_%03d%s" % (fov, suffix)), "w") as fh:
        fh.write(text)


def write_text(out, fov, text):
    write_fov_file(out, fov, ".csv", text)


def test_tables_with_different_columns_merge_into_their_union(tmp_path):
    out, results = locations(tmp_path)
    write_text(out, 0, "fov,x,y,z,target,quality,xc,yc,zc,distance\n"
                       "0,10.00,20.00,0,ACTB,0.900,5,10,0,0.1\n")
    write_text(out, 1, "fov,x,y,z,target,quality\n1,1.00,2.00,0,VIM,1.000\n")     # the six alone
    write_text(out, 2, "fov,x,y,z,target,quality,cell_id,xc,yc\n"                   # another order
                       '2,,,,KRT8,0.500,"cell 3, nucleus",1.5,2.5\n')
    write_text(out, 3, "fov,x,y,z,target,quality,radius\n")                         # empty FOV
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-3"))
    assert r.code == 0, r
    assert read_rows(os.path.join(results, "spots.csv")) == [
        HEADER + ["xc", "yc", "zc", "distance", "cell_id", "radius"],
        ["0", "10.00", "20.00", "0", "ACTB", "0.900", "5", "10", "0", "0.1", "", ""],
        ["1", "1.00", "2.00", "0", "VIM", "1.000", "", "", "", "", "", ""],
        ["2", "", "", "", "KRT8", "0.500", "1.5", "2.5", "", "", "cell 3, nucleus", ""]]
    s = summary_of(results)
    assert s["fovs_processed"] == 4 and s["fovs_missing"] == [] and s["failures"] == {}
    assert s["spots_per_fov"] == {"0": 1, "1": 1, "2": 1, "3": 0}  # the empty FOV is processed, 0 spots


def test_tables_with_the_same_columns_pass_through_unchanged(tmp_path):
    out, results = locations(tmp_path)
    head = "fov,x,y,z,target,quality,xc,yc,zc,spot_id\n"
    bodies = {0: '0,1.00,2.00,0,"HLA-A, HLA-B",0.500,0.5,1,0,7\n', 1: "1,3.00,4.00,1,ACTB,1.000,1.5,2,0.5,8\n"}
    for fov, body in bodies.items():
        write_text(out, fov, head + body)
    summary, code = mr.merge(out, results, starfish_io.parse_fov_ranges("0-1"), log=lambda m: None)
    assert code == 0
    with open(os.path.join(results, "spots.csv")) as fh:
        assert fh.read() == head + bodies[0] + bodies[1]


def test_fovs_placed_only_by_physical_coordinates_are_plotted(tmp_path):
    """DecodedSpots (starfish's to_decoded_dataframe) carry xc, yc but no pixel x, y."""
    out, results = locations(tmp_path)
    write_text(out, 0, "fov,x,y,z,target,quality,xc,yc,zc\n" +
               "".join("0,,,,G%d,1.000,%d.5,%d.25,0\n" % (i % 3, i, 2 * i) for i in range(50)))
    summary, code = mr.merge(out, results, starfish_io.parse_fov_ranges("0"), log=lambda m: None)
    assert code == 0 and summary["spots_total"] == 50
    table = mr.parse_table(0, open(os.path.join(out, "fov_000.csv")).read(), True)
    assert table.physical and table.sample[:2] == [(0.5, 0.25, "G0"), (1.5, 2.25, "G1")]
    assert len(table.sample) == 50


@pytest.mark.parametrize("text, reason", [
    ("fov,x,y,z,target,quality,bad name\n", "bad column name 'bad name'"),
    ('fov,x,y,z,target,quality,"x,y"\n', "bad column name 'x,y'"),
    ("fov,x,y,z,target,quality,=cmd\n", "bad column name '=cmd'"),
    ("fov,x,y,z,target,quality,X\n", "bad column name 'X'"),
    ("fov,x,y,z,target,quality,xc,XC\n", "a column appears twice in the header"),
    ("fov,x,y,z,target,quality,xc\n0,1.00,2.00,0,ACTB,1.000\n", "line 2 has 6 fields (expected 7)"),
    ("fov,x,y,z,target,quality\n0,1.00,2.00,0,ACTB,1.000,extra\n", "line 2 has 7 fields (expected 6)"),
    ("fov,x,y,z,target,quality," + ",".join("c%d" % i for i in range(33)) + "\n",
     "33 columns beyond fov,x,y,z,target,quality (at most 32)"),
    ("x,y,z,target,quality,fov\n", "bad header"),
])
def test_a_table_that_breaks_the_column_contract_is_malformed(tmp_path, text, reason):
    out, results = locations(tmp_path)
    write_table(out, 1, random_rows(1, 3, random.Random(8)))
    write_text(out, 0, text)
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-1"))
    assert r.code == 0, r
    s = summary_of(results)
    assert s["fovs_missing"] == [0]
    assert s["failures"]["0"].startswith("malformed output table fov_000.csv: " + reason), s["failures"]
    assert read_rows(os.path.join(results, "spots.csv"))[0] == HEADER  # nothing of the bad table


def test_merged_columns_are_capped(tmp_path):
    notes = []
    tables = [mr.Table(f, "", 0, collections.Counter(), None, ["f%d_c%d" % (f, i) for i in range(30)])
              for f in range(3)]
    columns = mr.merged_columns(tables, notes.append)
    assert len(columns) == 64 and columns[:2] == ["f0_c0", "f0_c1"] and columns[-1] == "f2_c3"
    assert notes and notes[0].startswith("note: the FOV tables have 90 columns beyond fov,x,y,z,target,quality; "
                                         "spots.csv keeps the first 64, dropped: f2_c4, f2_c5")


def test_end_to_end_an_empty_fov_is_processed_not_missing(synthetic, tmp_path):
    out, results = locations(tmp_path)
    recipe = tmp_path / "recipe.py"
    recipe.write_text("def process_fov(fov_index, experiment_url):\n"
                      "    if fov_index == 1:\n"
                      "        return []  # no tissue in this FOV\n"
                      "    return {'x': [1.5], 'y': [2.5], 'target': ['ACTB'], 'xc': [0.75], 'yc': [1.25]}\n")
    for index in range(2):
        r = run_script(PROCESS_FOV, STARFISH_RUN_ID=RUN_ID, STARFISH_EXPERIMENT=synthetic,
                       STARFISH_RECIPE=str(recipe), STARFISH_FOVS="0-1", STARFISH_FOV_OUTPUT=out,
                       AWS_BATCH_JOB_ARRAY_INDEX=str(index))
        assert r.code == 0, r
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-1"))
    assert r.code == 0, r
    s = summary_of(results)
    assert s["fovs_processed"] == 2 and s["fovs_missing"] == [] and s["spots_per_fov"] == {"0": 1, "1": 0}
    assert read_rows(os.path.join(results, "spots.csv")) == [HEADER + ["xc", "yc"],
                                                             ["0", "1.50", "2.50", "0", "ACTB", "1.000", "0.75", "1.25"]]


# ---------------------------------------------------------------------------------------
# summary.json's "compute": the FOVs' measurements (fov_NNN.metrics.json), totalled

def write_metrics(out, fov, wall, cpu, rss, **override):
    obj = {"fov": fov, "wall_seconds": wall, "cpu_seconds": cpu, "peak_rss_mib": rss}
    obj.update(override)
    write_raw_metrics(out, fov, json.dumps(obj))


def write_raw_metrics(out, fov, text):
    write_fov_file(out, fov, ".metrics.json", text)


def test_compute_totals_the_fovs_measurements(tmp_path):
    out, results = locations(tmp_path)
    rnd = random.Random(5)
    # (wall, cpu, peak MiB) per FOV; FOV 9 failed (no table) but its time was spent all the same
    measured = {0: (12.5, 11.0, 400.0), 1: (40.25, 38.0, 900.5), 2: (3.0, 2.5, 350.0), 3: (12.5, 12.0, 410.0),
                4: (7.0, 6.0, 380.0), 5: (55.0, 50.0, 1200.0), 9: (90.0, 1.0, 300.0)}
    for fov, (wall, cpu, rss) in measured.items():
        if fov != 9:
            write_table(out, fov, random_rows(fov, 3, rnd))
        write_metrics(out, fov, wall, cpu, rss)
    write_table(out, 6, random_rows(6, 3, rnd))  # processed by an older image: no measurements
    write_metrics(out, 50, 1000.0, 1000.0, 1.0)  # not a FOV of this run: not counted
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-6,9"))
    assert r.code == 0, r
    s = summary_of(results)
    assert list(s)[-1] == "compute"
    assert s["compute"] == {
        "fovs": 7,
        "wall_seconds": 220.25,
        "cpu_seconds": 120.5,
        # nearest rank over 7 FOVs: the 4th (p50) and the 7th (p90) of 300, 350, 380, 400, 410, 900.5, 1200
        "peak_rss_mib": {"p50": 400.0, "p90": 1200.0, "max": 1200.0},
        "slowest": [{"fov": 9, "wall_seconds": 90.0}, {"fov": 5, "wall_seconds": 55.0},
                    {"fov": 1, "wall_seconds": 40.25}, {"fov": 0, "wall_seconds": 12.5},
                    {"fov": 3, "wall_seconds": 12.5}],
    }
    assert "warning" not in r.stderr


@pytest.mark.parametrize("text, why", [
    ('{"fov": 1, "wall_seconds": NaN, "cpu_seconds": 1.0, "peak_rss_mib": 10.0}',
     '"wall_seconds" is NaN; expected seconds from 0 to 604800, e.g. 42.5'),
    ('{"fov": 1, "wall_seconds": 1.0, "cpu_seconds": -3, "peak_rss_mib": 10.0}',
     '"cpu_seconds" is -3; expected seconds from 0 to 3.09658e+08, e.g. 40.1'),
    ('{"fov": 1, "wall_seconds": 1e300, "cpu_seconds": 1.0, "peak_rss_mib": 10.0}',
     '"wall_seconds" is 1e+300; expected seconds from 0 to 604800, e.g. 42.5'),
    ('{"fov": 1, "wall_seconds": 1.0, "cpu_seconds": 1.0, "peak_rss_mib": 1%s}' % ("0" * 400),
     '"peak_rss_mib" is 1000000000000000000000000000000000000000; expected MiB from 0 to 1.67772e+07, e.g. 1843.2'),
    ('{"fov": 1, "wall_seconds": Infinity, "cpu_seconds": 1.0, "peak_rss_mib": 10.0}',
     '"wall_seconds" is Infinity; expected seconds from 0 to 604800'),
    ('{"fov": 1, "wall_seconds": "12", "cpu_seconds": 1.0, "peak_rss_mib": 10.0}',
     '"wall_seconds" is "12"; expected seconds'),
    ('{"fov": 1, "wall_seconds": true, "cpu_seconds": 1.0, "peak_rss_mib": 10.0}',
     '"wall_seconds" is true; expected seconds'),
    ('{"fov": 1, "cpu_seconds": 1.0, "peak_rss_mib": 10.0}', '"wall_seconds" is missing; expected seconds'),
    ('{"fov": 2, "wall_seconds": 1.0, "cpu_seconds": 1.0, "peak_rss_mib": 10.0}', '"fov" is 2, not 1'),
    ('{"wall_seconds": 1.0', "it is not JSON"),
    ("[1.0, 2.0]", "it is not a JSON object"),
    ('{"fov": 1, "wall_seconds": 1.0, "cpu_seconds": 1.0, "peak_rss_mib": 10.0, "pad": "%s"}' % ("x" * 5000),
     "it is over 4096 bytes; a metrics file is one small JSON object"),
])
def test_a_hostile_metrics_file_is_left_out_with_a_warning(tmp_path, text, why):
    out, results = locations(tmp_path)
    rnd = random.Random(6)
    for fov in (0, 1):
        write_table(out, fov, random_rows(fov, 3, rnd))
    write_metrics(out, 0, 2.0, 1.5, 100.0)
    write_raw_metrics(out, 1, text)
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-1"))
    assert r.code == 0, r  # the spots are the run's results whatever its measurements say
    assert "merge-results: warning: fov_001.metrics.json left out of summary.json's compute: " + why in r.stderr
    s = summary_of(results)
    assert s["fovs_processed"] == 2
    assert s["compute"]["fovs"] == 1 and s["compute"]["wall_seconds"] == 2.0
    assert s["compute"]["peak_rss_mib"] == {"p50": 100.0, "p90": 100.0, "max": 100.0}


def test_a_huge_metrics_object_on_s3_is_not_read_whole():
    """The size cap holds on S3 too: the object is streamed and the reading stops past the cap."""
    sio = starfish_io
    reads = []

    class Counting(sio.FakeS3Client):
        def get_object(self, Bucket, Key):
            body = sio.FakeS3Client.get_object(self, Bucket, Key)["Body"]

            class Body(object):
                def read(self, amount=None):
                    piece = body.read() if amount is None else body.read(amount)
                    reads.append(len(piece))
                    return piece
            return {"Body": Body()}
    client = Counting()
    client.put_object(Bucket="b", Key="fovs/fov_001.metrics.json", Body=b'{"fov": 1, "pad": "' + b"x" * (8 << 20))
    sio.set_s3_client(client)
    try:
        data = mr._read_capped("s3://b/fovs/fov_001.metrics.json", mr.MAX_METRICS_BYTES)
    finally:
        sio.set_s3_client(None)
    assert len(data) == mr.MAX_METRICS_BYTES + 1
    assert sum(reads) <= 2 * (mr.MAX_METRICS_BYTES + 1), sum(reads)


def test_a_recipe_over_the_size_cap_gets_no_hash_and_is_not_read_whole(tmp_path, monkeypatch):
    recipe = str(tmp_path / "recipe.py")
    with open(recipe, "wb") as fh:
        fh.truncate(mr.MAX_RECIPE_BYTES + 1)
    notes = []
    monkeypatch.setattr(starfish_io, "read_bytes", lambda url: pytest.fail("read whole: %s" % url))
    assert mr.recipe_identity(recipe, notes.append) is None
    assert notes == ["note: summary.json has no recipe hash: %s is over %d bytes" % (recipe, mr.MAX_RECIPE_BYTES)]


def test_compute_survives_parse_as_strict_json(tmp_path):
    """summary.json stays strict JSON (no NaN or Infinity) whatever the metrics files held."""
    out, results = locations(tmp_path)
    write_table(out, 0, [])
    write_raw_metrics(out, 0, '{"fov": 0, "wall_seconds": NaN, "cpu_seconds": Infinity, "peak_rss_mib": -Infinity}')
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0"))
    assert r.code == 0, r
    with open(os.path.join(results, "summary.json")) as fh:
        s = json.load(fh, parse_constant=lambda c: pytest.fail("summary.json holds %s" % c))
    assert "compute" not in s  # no FOV measured: like a run of an older image


def test_end_to_end_packed_child_then_merge(synthetic, tmp_path):
    """A packed child (3 FOVs, the middle one failing) measures all three; the merge totals them."""
    out, results = locations(tmp_path)
    recipe = tmp_path / "r.py"
    recipe.write_text("import time\n"
                      "def process_fov(fov_index, experiment_url):\n"
                      "    time.sleep(0.3)\n"
                      "    if fov_index == 1:\n"
                      "        raise ValueError('no spots found in round 2')\n"
                      "    return [{'x': 1, 'y': 2, 'target': 'ACTB'}]\n")
    at = tmp_path / "fovs-r0-0.json"
    at.write_text(json.dumps({"fovs": "0-2", "perChild": 3}))
    r = run_script(PROCESS_FOV, STARFISH_RUN_ID=RUN_ID, STARFISH_EXPERIMENT=synthetic, STARFISH_RECIPE=str(recipe),
                   STARFISH_FOVS_AT=str(at), STARFISH_FOV_OUTPUT=out)
    assert r.code == 1, r
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-2"))
    assert r.code == 0, r
    s = summary_of(results)
    assert s["fovs_processed"] == 2 and s["failures"] == {"1": "FOV 1: recipe raised ValueError: no spots found in round 2"}
    c = s["compute"]
    assert c["fovs"] == 3 and c["wall_seconds"] >= 0.9 and c["cpu_seconds"] >= 0
    assert sorted(x["fov"] for x in c["slowest"]) == [0, 1, 2]
    assert all(x["wall_seconds"] >= 0.3 for x in c["slowest"])
    assert 0 < c["peak_rss_mib"]["p50"] <= c["peak_rss_mib"]["p90"] <= c["peak_rss_mib"]["max"]


# ---------------------------------------------------------------------------------------
# what a biologist opens: counts_matrix.csv, fov_quality.csv, overview.png, the recipe's hash

def spots(fov, genes, xc=None, yc=None):
    """Table text of one spot per gene in ``genes`` (quality 0.5 and 1.0 alternating), with
    physical xc, yc at (xc + i, yc + i) when given."""
    head = "fov,x,y,z,target,quality" + (",xc,yc" if xc is not None else "") + "\n"
    rows = []
    for i, g in enumerate(genes):
        cell = '"%s"' % g.replace('"', '""') if ("," in g or '"' in g) else g
        row = "%d,%d.00,%d.00,0,%s,%s" % (fov, 10 + i, 10 + i, cell, "0.500" if i % 2 else "1.000")
        if xc is not None:
            row += ",%g,%g" % (xc + i, yc + i)
        rows.append(row + "\n")
    return head + "".join(rows)


def test_counts_matrix_is_genes_by_fovs(tmp_path):
    out, results = locations(tmp_path)
    write_text(out, 0, spots(0, ["VIM", "ACTB", "ACTB", "KRT8"]))
    write_text(out, 2, spots(2, ["ACTB", "VIM", "VIM", "VIM"]))
    write_text(out, 3, spots(3, []))                       # processed, 0 spots: a column of zeros
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-3"))
    assert r.code == 0, r
    assert read_rows(os.path.join(results, "counts_matrix.csv")) == [
        ["target", "fov_000", "fov_002", "fov_003"],       # the merged FOVs in order; FOV 1 has no table
        ["VIM", "1", "3", "0"],                            # most spots first
        ["ACTB", "2", "1", "0"],
        ["KRT8", "1", "0", "0"]]
    assert summary_of(results)["counts_per_gene"] == {"VIM": 4, "ACTB": 3, "KRT8": 1}


def test_counts_matrix_gene_names_cannot_break_the_csv_or_run_in_a_spreadsheet(tmp_path):
    out, results = locations(tmp_path)
    write_text(out, 0, spots(0, ["HLA-A, HLA-B", '=HYPERLINK("http://x")', "-5", "'=already"]))
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0"))
    assert r.code == 0, r
    rows = read_rows(os.path.join(results, "counts_matrix.csv"))
    assert sorted(row[0] for row in rows[1:]) == sorted(
        ["HLA-A, HLA-B", '\'=HYPERLINK("http://x")', "-5", "'=already"])  # a number stays a number
    assert all(len(row) == 2 and row[1] == "1" for row in rows[1:])


def test_spots_csv_cells_cannot_run_in_a_spreadsheet_whoever_wrote_the_table(tmp_path):
    """A recipe can write another FOV's table itself, past process-fov's escaping: spots.csv
    makes its formulas literal as counts_matrix.csv does; numbers and plain lines stay as written."""
    out, results = locations(tmp_path)
    write_text(out, 0, "fov,x,y,z,target,quality,note\n"
                       '0,1.00,2.00,0,"=HYPERLINK(""http://x"")",1.000,@SUM(A1)\n'
                       "0,-3.00,4.00,0,ACTB,1.000,-5\n"
                       "0,5.00,6.00,0,+VIM,0.500,'=already\n"
                       "0,7.00,8.00,0,-2+3+cmd|' /C calc'!A0,0.500,1e+05\n")
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0"))
    assert r.code == 0, r
    assert read_rows(os.path.join(results, "spots.csv")) == [
        ["fov", "x", "y", "z", "target", "quality", "note"],
        ["0", "1.00", "2.00", "0", '\'=HYPERLINK("http://x")', "1.000", "'@SUM(A1)"],
        ["0", "-3.00", "4.00", "0", "ACTB", "1.000", "-5"],
        ["0", "5.00", "6.00", "0", "'+VIM", "0.500", "'=already"],
        ["0", "7.00", "8.00", "0", "'-2+3+cmd|' /C calc'!A0", "0.500", "1e+05"]]
    with open(os.path.join(results, "spots.csv")) as fh:
        assert fh.read().splitlines()[2] == "0,-3.00,4.00,0,ACTB,1.000,-5"  # passed through as written
    assert summary_of(results)["counts_per_gene"] == {"=HYPERLINK(\"http://x\")": 1, "ACTB": 1, "+VIM": 1,
                                                      "-2+3+cmd|' /C calc'!A0": 1}


def test_fov_quality_lists_every_fov_with_what_is_known(tmp_path):
    out, results = locations(tmp_path)
    write_text(out, 0, spots(0, ["ACTB", "VIM", "KRT8", "ACTB"]))   # quality 1, .5, 1, .5
    write_text(out, 1, spots(1, []))
    write_metrics(out, 0, 42.5, 40.1, 1843.2)
    write_raw_metrics(out, 1, '{"fov": 1, "wall_seconds": "soon"}')  # unusable: left out, cells empty
    with open(os.path.join(out, "fov_002.error.json"), "w") as fh:
        json.dump({"fov": 2, "reason": "=FOV 2: tile not found,\nr1"}, fh)
    write_metrics(out, 2, 3.0, 2.0, 512)                           # a failed FOV's time was spent too
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-3"))
    assert r.code == 0, r
    assert read_rows(os.path.join(results, "fov_quality.csv")) == [
        ["fov", "status", "spots", "mean_quality", "wall_seconds", "peak_rss_mib", "registration_shift_px", "reason"],
        ["0", "processed", "4", "0.75", "42.5", "1843.2", "", ""],
        ["1", "processed", "0", "", "", "", "", ""],
        ["2", "failed", "", "", "3", "512", "", "'=FOV 2: tile not found, r1"],
        ["3", "no output", "", "", "", "", "", "no output table"]]


def test_fov_quality_has_the_registration_shift_the_recipe_reported(tmp_path):
    out, results = locations(tmp_path)
    for fov in range(3):
        write_text(out, fov, spots(fov, ["ACTB"]))
    write_metrics(out, 0, 4.0, 3.0, 200.0, recipe_facts={"registration_shift_px": 3.162, "rounds": 4})
    write_metrics(out, 1, 4.0, 3.0, 200.0)                                    # the recipe reported none
    write_metrics(out, 2, 5.0, 3.0, 200.0, recipe_facts={"registration_shift_px": 0})
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-2"))
    assert r.code == 0, r
    rows = read_rows(os.path.join(results, "fov_quality.csv"))
    assert rows[0][6] == "registration_shift_px"
    assert [row[6] for row in rows[1:]] == ["3.162", "", "0"]
    assert "warning" not in r.stderr


@pytest.mark.parametrize("facts, why", [
    ('{"registration_shift_px": NaN}', '"registration_shift_px" is NaN; expected a number of pixels from 0 to 100000'),
    ('{"registration_shift_px": -2.5}', '"registration_shift_px" is -2.5; expected a number of pixels'),
    ('{"registration_shift_px": 1e9}', '"registration_shift_px" is 1000000000.0; expected a number of pixels'),
    ('{"registration_shift_px": "3"}', '"registration_shift_px" is "3"; expected a number of pixels'),
    ('{"registration_shift_px": true}', '"registration_shift_px" is true; expected a number of pixels'),
    ('{"registration_shift_px": [1, 2]}', '"registration_shift_px" is [1, 2]; expected a number of pixels'),
    ('[3.0]', '"recipe_facts" is not a JSON object, e.g. {"registration_shift_px": 1.7}'),
])
def test_a_bad_registration_shift_is_an_empty_cell_and_a_warning(tmp_path, facts, why):
    out, results = locations(tmp_path)
    write_text(out, 0, spots(0, ["ACTB"]))
    write_raw_metrics(out, 0, '{"fov": 0, "wall_seconds": 4.0, "cpu_seconds": 3.0, "peak_rss_mib": 200.0, '
                              '"recipe_facts": %s}' % facts)
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0"))
    assert r.code == 0, r
    assert ("merge-results: warning: fov_000.metrics.json: registration shift left out of fov_quality.csv: "
            + why) in r.stderr
    # the FOV's own measurements stand: only the recipe's word is left out
    assert read_rows(os.path.join(results, "fov_quality.csv"))[1] == ["0", "processed", "1", "1", "4", "200", "", ""]
    assert summary_of(results)["compute"]["fovs"] == 1


RECIPE_WITH_PARAMETERS = r'''
import os
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ran"), "w").close()
raise SystemExit("a recipe the merge runs would stop it here")

MASKING_RADIUS = 15
THRESHOLD = 0.01
ALIAS = MASKING_RADIUS
COMPUTED = os.cpu_count()
PARAMETERS: dict = {
    "masking_radius_px": MASKING_RADIUS,
    "threshold": THRESHOLD,
    "alias": ALIAS,
    "measurement": "mean",
    "register": True,
    "seed": None,
    "offset": -3,
    "weird key\nwith=formula,\"quotes\"": 1,
    "computed": COMPUTED,
    "radii": [1, 2],
    "later": LATER,
    "infinite": 1e400,
    "huge": 2 ** 60,
    "exact_huge": 9007199254740993,
    "long_text": "%s",
    1: "key not text",
    **{"spread": 1},
}
LATER = 4
''' % ("x" * 300)


def test_the_recipe_s_parameters_are_read_from_its_text_without_running_it(tmp_path):
    out, results = locations(tmp_path)
    write_text(out, 0, spots(0, ["ACTB"]))
    recipe = tmp_path / "recipes" / "recipe.py"
    recipe.parent.mkdir()
    recipe.write_text(RECIPE_WITH_PARAMETERS)
    r = run_script(MERGE_RESULTS, STARFISH_RECIPE=str(recipe), **merge_env(out, results, "0"))
    assert r.code == 0, r
    assert not os.path.exists(str(tmp_path / "recipes" / "ran"))  # read, never run
    parameters = summary_of(results)["recipe"]["parameters"]
    assert parameters == {"masking_radius_px": 15, "threshold": 0.01, "alias": 15, "measurement": "mean",
                          "register": True, "seed": None, "offset": -3, "weird_key_with_formula__quotes_": 1,
                          "long_text": "x" * 197 + "..."}
    assert list(parameters)[:2] == ["masking_radius_px", "threshold"]  # in the recipe's order
    notes = [line for line in r.stderr.splitlines() if "left out of summary.json" in line]
    prefix = "merge-results: note: PARAMETERS of %s left out of summary.json: " % recipe
    assert notes[:5] == [
        prefix + "'computed' is not a literal (text, a number, True/False or None) nor a constant assigned one",
        prefix + "'radii' is not a literal (text, a number, True/False or None) nor a constant assigned one",
        prefix + "'later' is not a literal (text, a number, True/False or None) nor a constant assigned one",
        prefix + "'infinite' is inf, which JSON cannot hold",
        prefix + "'huge' is not a literal (text, a number, True/False or None) nor a constant assigned one"]
    assert "merge-results: note: ... and 3 more PARAMETERS entries left out" in r.stderr


@pytest.mark.parametrize("text, note", [
    ("PARAMETERS = dict(radius=15)\n", "summary.json has no recipe parameters: PARAMETERS in {recipe} is not a dict literal; write it as PARAMETERS = "
                                       '{"masking_radius_px": MASKING_RADIUS, "threshold": 0.01}'),
    ("def process_fov(:\n", "summary.json has no recipe parameters: {recipe} cannot be parsed (SyntaxError)"),
    ("RADIUS = 15\n", None),                                          # declares none: no "parameters"
])
def test_a_recipe_without_readable_parameters_has_its_hash_alone(tmp_path, text, note):
    out, results = locations(tmp_path)
    write_text(out, 0, spots(0, ["ACTB"]))
    recipe = tmp_path / "recipe.py"
    recipe.write_text(text)
    r = run_script(MERGE_RESULTS, STARFISH_RECIPE=str(recipe), **merge_env(out, results, "0"))
    assert r.code == 0, r
    assert sorted(summary_of(results)["recipe"]) == ["sha256", "url"]
    if note:
        assert "merge-results: note: " + note.replace("{recipe}", str(recipe)) in r.stderr
    else:
        assert "note" not in r.stderr


def test_parameters_are_capped(tmp_path):
    text = "PARAMETERS = {%s}\n" % ", ".join('"p%02d": %d' % (i, i) for i in range(40))
    notes = []
    parameters = mr.recipe_parameters(text.encode(), "recipe.py", notes.append)
    assert list(parameters) == ["p%02d" % i for i in range(32)]
    assert notes == ["note: PARAMETERS of recipe.py left out of summary.json: 'p32' and the entries after it (at most 32)"]


def test_mean_quality_ignores_cells_that_are_not_numbers(tmp_path):
    text = "fov,x,y,z,target,quality\n0,1,1,0,A,0.25\n0,1,1,0,A,\n0,1,1,0,A,nan\n0,1,1,0,A,high\n0,1,1,0,A,0.75\n"
    assert mr.parse_table(0, text, False).mean_quality() == 0.5
    assert mr.parse_table(0, "fov,x,y,z,target,quality\n", False).mean_quality() is None


def test_the_recipe_that_made_the_results_is_in_the_summary(tmp_path):
    import hashlib
    out, results = locations(tmp_path)
    write_text(out, 0, spots(0, ["ACTB"]))
    with open(NUMPY_RECIPE, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    r = run_script(MERGE_RESULTS, STARFISH_RECIPE=NUMPY_RECIPE, **merge_env(out, results, "0"))
    assert r.code == 0, r
    assert summary_of(results)["recipe"] == {"url": NUMPY_RECIPE, "sha256": digest,
                                             "parameters": {"dog_sigma_small_px": 1.0, "dog_sigma_large_px": 3.0,
                                                            "detect_sigmas": 3.0, "min_distance_px": 2,
                                                            "colour_rounds": 4, "colour_sigmas": 8.0,
                                                            "min_colour_spots": 8, "min_quality": 0.5,
                                                            "min_signal_sigmas": 5.0, "min_known_rounds": 2}}
    assert "note" not in r.stderr


def test_without_a_readable_recipe_the_summary_has_no_hash(tmp_path):
    out, results = locations(tmp_path)
    write_text(out, 0, spots(0, ["ACTB"]))
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0"))   # an older launcher: not passed
    assert r.code == 0 and "recipe" not in summary_of(results)
    gone = str(tmp_path / "gone.py")
    r = run_script(MERGE_RESULTS, STARFISH_RECIPE=gone, **merge_env(out, results, "0"))
    assert r.code == 0, r                                           # the results stand without it
    assert "recipe" not in summary_of(results)
    assert "note: summary.json has no recipe hash: %s cannot be read" % gone in r.stderr


def cluster(fov, n, xc=None, yc=None):
    """Table text of ``n`` ACTB spots within a pixel of (10, 10), at stage position (xc, yc) when given."""
    head = "fov,x,y,z,target,quality" + (",xc,yc" if xc is not None else "") + "\n"
    return head + "".join("%d,%.1f,%.1f,0,ACTB,1.0%s\n" % (fov, 10 + i % 2, 10 + i % 3 * 0.5,
                                                          ",%g,%g" % (xc + i % 2, yc + i % 3 * 0.5)
                                                          if xc is not None else "")
                          for i in range(n))


def coloured_pixels(png_path):
    """(x, y) of the saturated pixels left of the legend: the coloured spots (text and axes are
    black or grey; the legend is on the right)."""
    import numpy as np
    from PIL import Image
    rgb = np.asarray(Image.open(png_path).convert("RGB")).astype(int)
    saturated = (rgb.max(axis=2) - rgb.min(axis=2)) > 80
    saturated[:, int(rgb.shape[1] * 0.9):] = False
    ys, xs = np.nonzero(saturated)
    return xs, ys


def test_overview_places_fovs_at_their_stage_positions(tmp_path):
    """FOV 1 imaged 1 mm below FOV 0 (same pixel coordinates): stacked vertically, not side by side."""
    out, results = locations(tmp_path)
    write_text(out, 0, cluster(0, 30, xc=0, yc=0))
    write_text(out, 1, cluster(1, 30, xc=0, yc=1000))
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-1"))
    assert r.code == 0, r
    xs, ys = coloured_pixels(os.path.join(results, "overview.png"))
    assert len(xs) and (ys.max() - ys.min()) > 5 * (xs.max() - xs.min())


def test_overview_without_physical_coordinates_lays_fovs_on_a_grid(tmp_path):
    out, results = locations(tmp_path)
    write_text(out, 0, cluster(0, 30))
    write_text(out, 1, cluster(1, 30))
    r = run_script(MERGE_RESULTS, **merge_env(out, results, "0-1"))
    assert r.code == 0, r
    xs, ys = coloured_pixels(os.path.join(results, "overview.png"))
    assert len(xs) and (xs.max() - xs.min()) > 5 * (ys.max() - ys.min())   # side by side
    table = mr.parse_table(0, spots(0, ["ACTB"] * 3), True, 10)
    assert not table.overview_physical and table.overview[0] == (10.0, 10.0, "ACTB")


@pytest.mark.parametrize("merged, placed, total, notes", [
    (2, 2, 2, []),
    (2, 0, 2, ["no FOV has physical coordinates (xc, yc): FOVs on a grid in pixel coordinates, "
               "not at their stage positions"]),
    (3, 2, 4, ["1 FOVs without physical coordinates (xc, yc) not shown", "1 of 4 FOVs missing"]),
])
def test_overview_says_what_it_does_not_show(merged, placed, total, notes):
    assert mr.overview_notes(merged, placed, total) == notes


@pytest.mark.parametrize("span, length", [(100, 20), (1000, 200), (37, 5), (0.001, 0.0002), (12000, 2000)])
def test_scale_bar_is_a_round_fifth_of_the_width(span, length):
    assert mr.nice_length(span) == pytest.approx(length)


def test_overview_sample_is_capped_per_fov(tmp_path):
    text = spots(0, ["G%d" % (i % 7) for i in range(1000)], xc=100, yc=200)
    table = mr.parse_table(0, text, False, 50)
    assert table.overview_physical and len(table.overview) == 50
    assert table.overview[0] == (100.0, 200.0, "G0")


def _merge_with_recipe(tmp_path, text_or_bytes):
    out, results = locations(tmp_path)
    write_text(out, 0, spots(0, ["ACTB"]))
    recipe = tmp_path / "recipe.py"
    if isinstance(text_or_bytes, bytes):
        recipe.write_bytes(text_or_bytes)
    else:
        recipe.write_text(text_or_bytes)
    r = run_script(MERGE_RESULTS, STARFISH_RECIPE=str(recipe), **merge_env(out, results, "0"))
    assert r.code == 0, r  # the recipe's PARAMETERS never cost the results
    return r, summary_of(results)["recipe"], str(recipe)


def test_a_recipe_too_large_to_read_parameters_from_keeps_its_hash(tmp_path):
    # ast.parse of a long literal takes ~500 bytes of memory a byte: a 16 MB recipe (the hash's
    # limit) of it would take the merge's whole memory
    text = 'PARAMETERS = {"threshold": 0.01}\nTABLE = [%s]\n' % ("1," * (mr.MAX_PARAMETERS_SOURCE // 2))
    r, recipe, url = _merge_with_recipe(tmp_path, text)
    assert sorted(recipe) == ["sha256", "url"]
    assert recipe["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert ("merge-results: note: summary.json has no recipe parameters: %s is %d bytes; PARAMETERS is read from "
            "recipes of at most 262144 bytes (a recipe is a few KB: keep data and generated tables out of it)"
            % (url, len(text))) in r.stderr


def test_a_recipe_saved_with_a_byte_order_mark_has_its_parameters(tmp_path):
    # Python runs such a file (PEP 263: a UTF-8 BOM is allowed); its parameters are read as well
    r, recipe, _ = _merge_with_recipe(tmp_path, b'\xef\xbb\xbfRADIUS = 15\nPARAMETERS = {"radius_px": RADIUS}\n')
    assert recipe["parameters"] == {"radius_px": 15}


@pytest.mark.parametrize("text, why", [
    ("X = 1%s\nPARAMETERS = {'a': 1}\n" % ("+1" * 100000), "cannot be parsed (RecursionError)"),
    ("X = [%s]\nPARAMETERS = {'a': 1}\n" % ("[" * 300 + "]" * 300), "cannot be parsed (SyntaxError)"),
    ("PARAMETERS = {'a': 1}\0\n", "cannot be parsed (%s)" % ("ValueError" if sys.version_info < (3, 12) else "SyntaxError")),
    (b"PARAMETERS = {'caf\xe9': 1}\n", "cannot be parsed (UnicodeDecodeError)"),
], ids=["deep expression", "deep brackets", "null byte", "not UTF-8"])
def test_a_recipe_whose_text_defeats_the_parser_merges_without_parameters(tmp_path, text, why):
    r, recipe, url = _merge_with_recipe(tmp_path, text)
    assert sorted(recipe) == ["sha256", "url"]
    assert "merge-results: note: summary.json has no recipe parameters: %s %s" % (url, why) in r.stderr


def test_a_crash_while_reading_parameters_costs_only_the_parameters(tmp_path, monkeypatch):
    # Python 3.10 (the image's) can crash on a deeply nested expression; the reading runs in a child
    # process, here one that dies as such a crash would
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crashing.chmod(0o755)
    monkeypatch.setattr(mr.sys, "executable", str(crashing))
    notes = []
    assert mr.recipe_parameters(b'PARAMETERS = {"radius_px": 15}\n', "recipe.py", notes.append) is None
    assert notes == ["note: summary.json has no recipe parameters: recipe.py: reading it was killed by signal 11 "
                     "(within 1024 MiB)"]


def test_reading_parameters_that_takes_too_long_costs_only_the_parameters(monkeypatch):
    monkeypatch.setattr(mr, "PARAMETERS_SECONDS", 0.001)
    notes = []
    assert mr.recipe_parameters(b'PARAMETERS = {"radius_px": 15}\n', "recipe.py", notes.append) is None
    assert notes == ["note: summary.json has no recipe parameters: recipe.py: reading it took over 0.001 s "
                     "(within 1024 MiB)"]
