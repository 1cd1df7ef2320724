"""starfish_io: local paths fully; s3:// through an in-memory client (no boto3 needed)."""
import json
import os

import pytest

import starfish_io as sio
import process_fov as pf
import merge_results as mr
from conftest import NUMPY_RECIPE, RUN_ID


@pytest.fixture
def fake_s3():
    client = sio.FakeS3Client(page_size=3)  # tiny pages exercise the pagination
    sio.set_s3_client(client)
    yield client
    sio.set_s3_client(None)


def test_read_chunks_streams_local_and_s3_and_fails_before_the_first_piece(tmp_path, fake_s3):
    path = os.path.join(str(tmp_path), "tile.bin")
    sio.write_bytes(path, b"0123456789")
    assert list(sio.read_chunks(path, 4)) == [b"0123", b"4567", b"89"]
    fake_s3.put_object(Bucket="b", Key="k/tile.bin", Body=b"0123456789")
    assert list(sio.read_chunks("s3://b/k/tile.bin", 4)) == [b"0123", b"4567", b"89"]
    with pytest.raises(FileNotFoundError):
        sio.read_chunks("s3://b/k/absent.bin")
    with pytest.raises(FileNotFoundError):
        sio.read_chunks(path + ".absent")
    with sio.local_files(False), pytest.raises(sio.UrlRefused):
        sio.read_chunks(path)


def test_local_roundtrip_is_atomic_and_lists(tmp_path):
    target = os.path.join(str(tmp_path), "a", "b", "x.txt")
    sio.write_text(target, "hello")
    assert sio.read_text(target) == "hello"
    sio.write_bytes(target, b"again")
    assert sio.read_bytes(target) == b"again"
    assert os.listdir(os.path.dirname(target)) == ["x.txt"]  # no temp files left
    assert sio.exists(target) and not sio.exists(target + ".no")
    assert sio.list_prefix(os.path.dirname(target)) == ["x.txt"]
    assert sio.list_prefix(os.path.join(str(tmp_path), "absent")) == []
    assert sio.read_text("file://" + target) == "again"
    sio.remove(target)
    sio.remove(target)  # removing twice is fine
    with pytest.raises(FileNotFoundError):
        sio.read_bytes(target)


def test_join_and_dirname():
    assert sio.join("s3://b/runs/r1", "fovs", "fov_000.csv") == "s3://b/runs/r1/fovs/fov_000.csv"
    assert sio.join("s3://b/runs/r1/", "/fovs") == "s3://b/runs/r1/fovs"
    assert sio.join("https://h/x", "a.json") == "https://h/x/a.json"
    assert sio.join("/data/exp", "a.json") == "/data/exp/a.json"
    assert sio.join("/data/exp", "s3://other/a.json") == "s3://other/a.json"
    assert sio.join("/data/exp", "/abs/a.json") == "/abs/a.json"
    assert sio.dirname("s3://b/exp/experiment.json") == "s3://b/exp"
    assert sio.dirname("https://h/exp/experiment.json") == "https://h/exp"
    assert sio.dirname("/d/experiment.json") == "/d"
    assert sio.split_s3("s3://bucket/a/b.csv") == ("bucket", "a/b.csv")


def test_s3_with_fake_client(fake_s3):
    for i in range(7):
        sio.write_text("s3://bkt/run/fovs/fov_%03d.csv" % i, "x%d" % i)
    sio.write_text("s3://bkt/run/fovs/sub/deeper.csv", "no")
    assert sio.read_text("s3://bkt/run/fovs/fov_004.csv") == "x4"
    assert sio.list_prefix("s3://bkt/run/fovs") == ["fov_%03d.csv" % i for i in range(7)]
    assert sio.exists("s3://bkt/run/fovs/fov_000.csv")
    assert not sio.exists("s3://bkt/run/fovs/nope.csv")
    with pytest.raises(FileNotFoundError) as info:
        sio.read_bytes("s3://bkt/run/fovs/nope.csv")
    assert info.value.filename == "s3://bkt/run/fovs/nope.csv"
    sio.remove("s3://bkt/run/fovs/fov_000.csv")
    assert not sio.exists("s3://bkt/run/fovs/fov_000.csv")


def test_s3_without_boto3_gives_a_clear_error():
    try:
        import boto3  # noqa: F401
        pytest.skip("boto3 is installed")
    except ImportError:
        pass
    sio.set_s3_client(None)
    with pytest.raises(RuntimeError, match="boto3 is required for s3:// URLs"):
        sio.read_bytes("s3://bucket/key")


def test_s3_with_real_boto3_client_object():
    boto3 = pytest.importorskip("boto3")
    client = boto3.client("s3", region_name="us-east-1")
    assert hasattr(client, "list_objects_v2")


def _upload_dir(client, local_dir, bucket, prefix):
    for name in os.listdir(local_dir):
        with open(os.path.join(local_dir, name), "rb") as fh:
            client.put_object(Bucket=bucket, Key=prefix + name, Body=fh.read())


def test_process_and_merge_on_s3(fake_s3, synthetic, capsys):
    """The whole flow with every URL on s3:// (in-process, the fake client injected)."""
    _upload_dir(fake_s3, os.path.dirname(synthetic), "lab-data", "iss/")
    with open(NUMPY_RECIPE, "rb") as fh:
        fake_s3.put_object(Bucket="lab-data", Key="recipes/iss.py", Body=fh.read())
    fovs_out = "s3://lab-results/outputs/%s/fovs" % RUN_ID
    results = "s3://lab-results/outputs/%s/results" % RUN_ID
    env = {"STARFISH_RUN_ID": RUN_ID,
           "STARFISH_EXPERIMENT": "s3://lab-data/iss/experiment.json",
           "STARFISH_RECIPE": "s3://lab-data/recipes/iss.py",
           "STARFISH_FOVS": "0,2", "STARFISH_FOV_OUTPUT": fovs_out, "AWS_BATCH_JOB_ARRAY_INDEX": "1"}
    assert pf.main(env) == 0
    table = sio.read_text(fovs_out + "/fov_002.csv").splitlines()
    assert table[0].split(",")[:6] == ["fov", "x", "y", "z", "target", "quality"] and len(table) > 70

    # a failing FOV on s3 records its reason next to the tables
    sio.remove("s3://lab-data/iss/primary-fov_000-r0-c0-z0.tiff")
    env["AWS_BATCH_JOB_ARRAY_INDEX"] = "0"
    assert pf.main(env) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == ("process-fov: FOV 0: tile not found: s3://lab-data/iss/primary-fov_000-r0-c0-z0.tiff "
                    "(tiles[0].file in s3://lab-data/iss/primary-fov_000.json)")
    err = json.loads(sio.read_text(fovs_out + "/fov_000.error.json"))
    assert err == {"fov": 0, "reason": last[len("process-fov: "):]}

    code = mr.main({"STARFISH_RUN_ID": RUN_ID, "STARFISH_FOVS": "0-2", "STARFISH_FOV_OUTPUT": fovs_out,
                    "STARFISH_RESULTS_OUTPUT": results})
    assert code == 0
    summary = json.loads(sio.read_text(results + "/summary.json"))
    assert summary["fovs_processed"] == 1 and summary["fovs_missing"] == [0, 1]
    assert summary["failures"] == {"0": err["reason"], "1": "no output table"}
    assert summary["spots_total"] == len(table) - 1
    assert sio.read_bytes(results + "/spots.png")[:4] == b"\x89PNG"
    merged = sio.read_text(results + "/spots.csv").splitlines()
    assert merged == table

    # per-FOV tables and error records carry the tag the bucket's lifecycle rule expires;
    # results never do
    intermediate = "starfish%3Alifecycle=intermediate"
    assert fake_s3.tagging[("lab-results", "outputs/%s/fovs/fov_002.csv" % RUN_ID)] == intermediate
    assert fake_s3.tagging[("lab-results", "outputs/%s/fovs/fov_000.error.json" % RUN_ID)] == intermediate
    assert fake_s3.tagging[("lab-results", "outputs/%s/fovs/fov_002.metrics.json" % RUN_ID)] == intermediate
    assert ("lab-results", "outputs/%s/results/spots.csv" % RUN_ID) not in fake_s3.tagging

    # the jobs wrote under the locations they were given, and nowhere else in the bucket
    written = sorted(k for (b, k) in fake_s3.objects if b == "lab-results")
    assert written == ["outputs/%s/fovs/fov_000.error.json" % RUN_ID, "outputs/%s/fovs/fov_000.metrics.json" % RUN_ID,
                       "outputs/%s/fovs/fov_002.csv" % RUN_ID, "outputs/%s/fovs/fov_002.metrics.json" % RUN_ID,
                       "outputs/%s/results/counts_matrix.csv" % RUN_ID, "outputs/%s/results/fov_quality.csv" % RUN_ID,
                       "outputs/%s/results/overview.png" % RUN_ID,
                       "outputs/%s/results/spots.csv" % RUN_ID, "outputs/%s/results/spots.png" % RUN_ID,
                       "outputs/%s/results/summary.json" % RUN_ID]


# ---------------------------------------------------------------------------------------
# FOV range text: the one parser both scripts use (the grammar of src/run/fov-ranges.ts)

def test_parse_fov_ranges_holds_ranges_in_ascending_order():
    r = sio.parse_fov_ranges("9-12, 1-3 ,7")
    assert r.ranges == ((1, 3), (7, 7), (9, 12))
    assert list(r) == [1, 2, 3, 7, 9, 10, 11, 12]
    assert len(r) == 8
    assert [r[i] for i in range(8)] == [1, 2, 3, 7, 9, 10, 11, 12]
    assert str(r) == "1-3,7,9-12"
    assert 7 in r and 10 in r and 12 in r
    assert 0 not in r and 4 not in r and 8 not in r and 13 not in r
    with pytest.raises(IndexError):
        r[8]
    with pytest.raises(IndexError):
        r[-1]  # a child index is never negative


def test_parse_fov_ranges_merges_overlaps_and_duplicates():
    assert str(sio.parse_fov_ranges("5,5,4")) == "4-5"
    assert sio.parse_fov_ranges("0-3,2-6,7,9").ranges == ((0, 7), (9, 9))
    assert sio.parse_fov_ranges("007") == sio.parse_fov_ranges("7")
    assert len(sio.parse_fov_ranges("0-9999")) == 10000


def test_parse_fov_ranges_indexes_without_expanding():
    r = sio.parse_fov_ranges("0-499999,500001-1000000")
    assert r.ranges == ((0, 499999), (500001, 1000000))
    assert len(r) == 1000000
    assert r[499999] == 499999 and r[500000] == 500001 and r[999999] == 1000000
    assert 500000 not in r


@pytest.mark.parametrize("text, reason", [
    ("", "no FOVs given"),
    ("  ", "no FOVs given"),
    ("a", "'a' is not a FOV index or range"),
    ("1-", "'1-' is not a FOV index or range"),
    ("-1", "'-1' is not a FOV index or range"),
    ("1 - 3", "'1 - 3' is not a FOV index or range"),
    ("1.5", "'1.5' is not a FOV index or range"),
    ("\u00b2", "'\u00b2' is not a FOV index or range"),  # a digit to str.isdigit, not to the grammar
    ("1,,2", "an empty item (a comma too many) is not a FOV index or range"),
    ("3-1", "the range '3-1' runs backwards; write it low-high, like 1-3"),
    ("0-1000001", "FOV 1000001 is beyond any experiment this tool can run (1000000 at most)"),
])
def test_parse_fov_ranges_rejects(text, reason):
    with pytest.raises(ValueError) as info:
        sio.parse_fov_ranges(text)
    assert str(info.value) == reason


def test_format_fov_ranges():
    assert sio.format_fov_ranges([9, 1, 2, 3, 7, 10]) == "1-3,7,9-10"
    assert sio.format_fov_ranges([]) == ""


def test_require_env_names_the_variable_and_an_example():
    assert sio.require_env({"STARFISH_RUN_ID": " 261125-k3f9 "}, "STARFISH_RUN_ID") == "261125-k3f9"
    with pytest.raises(sio.EnvError) as info:
        sio.require_env({"STARFISH_RUN_ID": " "}, "STARFISH_RUN_ID")
    assert str(info.value) == "STARFISH_RUN_ID is not set; example: STARFISH_RUN_ID=261125-k3f9"
    assert sio.require_output_env({"STARFISH_FOV_OUTPUT": "s3://b/outputs/r/fovs/"},
                                  "STARFISH_FOV_OUTPUT") == "s3://b/outputs/r/fovs"
    assert sio.require_fovs_env({"STARFISH_FOVS": "2,0-1"}).ranges == ((0, 2),)


def test_fovs_at_reads_the_launchers_list_object_of_any_length(tmp_path):
    # 10,000 FOVs numbered at every other index: ~49,000 characters, six times what Batch lets
    # a job's environment carry; the object carries it.
    text = sio.format_fov_ranges(range(0, 20000, 2))
    assert len(text) > 8192
    obj = tmp_path / "fovs-r0-0.json"
    obj.write_text(json.dumps({"fovs": text}))
    fovs = sio.require_fovs_env({"STARFISH_FOVS_AT": str(obj)})
    assert len(fovs) == 10000 and fovs[0] == 0 and fovs[9999] == 19998


def test_fovs_at_through_s3(tmp_path):
    client = sio.FakeS3Client()
    sio.set_s3_client(client)
    try:
        sio.write_text("s3://lab-starfish-results/runs/r/inputs/fovs-plan.json", json.dumps({"fovs": "0-3,7"}))
        fovs = sio.require_fovs_env({"STARFISH_FOVS_AT": "s3://lab-starfish-results/runs/r/inputs/fovs-plan.json"})
        assert list(fovs) == [0, 1, 2, 3, 7]
    finally:
        sio.set_s3_client(None)


@pytest.mark.parametrize("env, message", [
    ({"STARFISH_FOVS": "0-3", "STARFISH_FOVS_AT": "/tmp/x.json"},
     "STARFISH_FOVS and STARFISH_FOVS_AT are both set; set one"),
    ({"STARFISH_FOVS_AT": "/nonexistent/fovs-r1-0.json"},
     "STARFISH_FOVS_AT=/nonexistent/fovs-r1-0.json cannot be read"),
    ({"STARFISH_FOVS_AT": "OBJ:[1, 2]"}, 'is not a FOV list object; expected {"fovs": "0-9999"}'),
    ({"STARFISH_FOVS_AT": 'OBJ:{"fovs": "1,x"}'},
     "the \"fovs\" of STARFISH_FOVS_AT="),
    ({}, "STARFISH_FOVS is not set; example: STARFISH_FOVS=0-9999"),
])
def test_fovs_at_refusals_name_the_variable(tmp_path, env, message):
    env = dict(env)
    if env.get("STARFISH_FOVS_AT", "").startswith("OBJ:"):
        obj = tmp_path / "fovs.json"
        obj.write_text(env["STARFISH_FOVS_AT"][4:])
        env["STARFISH_FOVS_AT"] = str(obj)
    with pytest.raises(sio.EnvError) as info:
        sio.require_fovs_env(env)
    assert message in str(info.value)


def test_fovs_at_refuses_an_oversized_object(tmp_path):
    obj = tmp_path / "fovs.json"
    obj.write_bytes(b'{"fovs": "' + b"0," * (sio.MAX_FOVS_OBJECT_BYTES // 2) + b'0"}')
    with pytest.raises(sio.EnvError) as info:
        sio.require_fovs_env({"STARFISH_FOVS_AT": str(obj)})
    assert "a FOV list object is at most" in str(info.value)


# ---------------------------------------------------------------------------------------
# "perChild": how many FOVs of the list each array child processes

def _plan_object(tmp_path, obj):
    path = tmp_path / "fovs-r0-0.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


def test_per_child_is_read_from_the_launchers_object(tmp_path):
    at = _plan_object(tmp_path, {"fovs": "0-9999", "perChild": 15})
    fovs, per_child = sio.require_fov_plan_env({"STARFISH_FOVS_AT": at})
    assert len(fovs) == 10000 and per_child == 15
    assert sio.require_fov_plan_env({"STARFISH_FOVS_AT": _plan_object(tmp_path, {"fovs": "0-3"})})[1] == 1
    assert sio.require_fov_plan_env({"STARFISH_FOVS": "0-3"})[1] == 1  # a job started by hand: one per child
    assert sio.require_fov_plan_env({"STARFISH_FOVS_AT": _plan_object(tmp_path, {"fovs": "0", "perChild": 10000})})[1] == 10000


@pytest.mark.parametrize("raw, shown", [("0", "0"), ("-1", "-1"), ("10001", "10001"), ("2.5", "2.5"),
                                        ("3.0", "3.0"), ('"15"', '"15"'), ("true", "true"), ("null", "null")])
def test_a_per_child_that_is_not_a_whole_number_from_1_to_10000_is_refused(tmp_path, raw, shown):
    at = _plan_object(tmp_path, '{"fovs": "0-9", "perChild": %s}' % raw)
    with pytest.raises(sio.EnvError) as info:
        sio.require_fov_plan_env({"STARFISH_FOVS_AT": at})
    assert str(info.value) == ('the "perChild" of STARFISH_FOVS_AT=%s must be a whole number of FOVs from 1 to '
                               '10000, got %s; example: {"fovs": "0-9999", "perChild": 15}' % (at, shown))
    # merge-results reads the same object for the FOV list alone: a bad perChild is no concern of it
    assert list(sio.require_fovs_env({"STARFISH_FOVS_AT": at})) == list(range(10))
