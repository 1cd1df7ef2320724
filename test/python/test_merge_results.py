"""merge-results: merged table equals its inputs, summary, missing FOVs, exit codes."""
import collections
import csv
import io
import json
import os
import random

import pytest

from conftest import MERGE_RESULTS, NUMPY_RECIPE, PROCESS_FOV, RUN_ID, run_script

import merge_results as mr
import starfish_io

HEADER = ["fov", "x", "y", "z", "target", "quality"]
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
    assert sorted(os.listdir(results)) == ["spots.csv", "spots.png", "summary.json"]
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
    assert sorted(os.listdir(results)) == ["spots.csv", "summary.json"]


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


def test_many_panels_are_capped(tmp_path):
    out, results = locations(tmp_path)
    rnd = random.Random(5)
    for fov in range(100):
        write_table(out, fov, random_rows(fov, 3, rnd))
    summary, code = mr.merge(out, results, starfish_io.parse_fov_ranges("0-99"), log=lambda m: None)
    assert code == 0 and summary["fovs_processed"] == 100 and summary["spots_total"] == 300
    assert os.path.getsize(os.path.join(results, "spots.png")) > 10000


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


# ---------------------------------------------------------------------------------------
# columns beyond the six: starfish's physical coordinates and whatever else the recipes returned

def write_text(out, fov, text):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "fov_%03d.csv" % fov), "w") as fh:
        fh.write(text)


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
