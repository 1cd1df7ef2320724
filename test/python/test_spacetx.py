"""containers/common/spacetx.py: the SpaceTx reader process-fov runs before a recipe.

The conformance table (test/fixtures/spacetx/cases.json, written by build_cases.py from the real
starfish and slicedimage sources) drives check_fov and verify_tiles over every format variant;
the focused tests below pin what a scientist sees: the messages, the resolved locations, the
checksum streaming, the URL policy, and S3.
"""
import hashlib
import json
import os
import re
import sys

import pytest

from conftest import REPO

import spacetx
import starfish_io as sio

from spacetx_cases import CASES_JSON, load_cases, materialise

FIXTURES = os.path.dirname(CASES_JSON)
CASES = load_cases()


def outcome(experiment, fov):
    """(True, FovSource) or (False, FormatError) of check_fov + verify_tiles."""
    try:
        source = spacetx.check_fov(experiment, fov)
        spacetx.verify_tiles(source)
        return True, source
    except spacetx.FormatError as exc:
        return False, exc


# ---------------------------------------------------------------------------------------
# the conformance table

def test_the_table_is_what_build_cases_writes():
    """cases.json is generated: a hand edit would drift from its builder (and its sources)."""
    sys.path.insert(0, FIXTURES)
    try:
        import build_cases
    finally:
        sys.path.remove(FIXTURES)
    with open(CASES_JSON) as fh:
        assert fh.read() == build_cases.render(build_cases.CASES), \
            "run /usr/bin/python3 test/fixtures/spacetx/build_cases.py"


def test_the_table_is_well_formed():
    with open(CASES_JSON) as fh:
        table = json.load(fh)["cases"]  # as written: a name given twice would be one key of CASES
    names = [c["name"] for c in table]
    assert len(names) == len(set(names))
    for c in table:
        assert re.match(r"^[a-z0-9.-]+$", c["name"]), c["name"]
        assert c["what"] and c["source"].startswith(("spacetx/starfish ", "spacetx/slicedimage ")), c["name"]
        assert "@" in c["source"], c["name"]  # a version is cited
        assert c["experiment"] in c["files"], c["name"]
        assert not any(k.startswith("../") or "/../" in k for k in c["files"]), c["name"]
        assert set(c["starfish"]) in ({"loads", "fovs"}, {"loads", "error"}), c["name"]
        assert set(c["container"]) in ({"ok", "fov", "name"}, {"ok", "fov", "message"}), c["name"]


def test_the_table_covers_the_variants_of_the_issue():
    needed = ["v4-primary-images", "v5-flat", "version-6", "version-missing", "nested-collections",
              "file-url-reference", "absolute-path-reference", "absolute-tile-reference", "sibling-folder-reference",
              "fov-names-4-digits", "fov-names-unpadded", "fov-names-duplicate-number", "fov-names-not-numbered",
              "extras-missing", "codeword-without-v", "sha256-mismatch", "sha256-absent", "tile-format-png",
              "tile-format-numpy", "names-with-spaces", "primary-is-a-tile-set"]
    assert [n for n in needed if n not in CASES] == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_conformance(name, tmp_path):
    case = CASES[name]
    experiment = materialise(case, tmp_path)
    expected = case["container"]
    ok, got = outcome(experiment, expected["fov"])
    if expected["ok"]:
        assert ok, "%s: refused: %s" % (name, got)
        assert got.name == expected["name"] and got.index == expected["fov"]
        for tile in got.tiles:  # every tile the FOV names resolves to a file that is there
            assert os.path.isfile(tile.url), tile.url
    else:
        assert not ok, "%s: accepted FOV %s, expected a refusal matching %r" % (name, got.name, expected["message"])
        assert re.search(expected["message"], got.message), "%s: %r does not match %r" % (
            name, got.message, expected["message"])
        assert got.code in (spacetx.EXIT_FAILURE, spacetx.EXIT_BAD_REQUEST)


def test_where_starfish_loads_the_container_refuses_only_what_this_tool_cannot_address():
    """A FOV starfish loads is refused only for this tool's own reasons: FOV numbering, the URL
    policy, an FOV without primary images, an ambiguous name."""
    own = {"fov-names-unpadded-absent", "fov-names-duplicate-number", "fov-names-not-numbered", "fov-not-in-experiment",
           "v5-without-primary", "fov-only-in-nuclei", "nested-collection-key-is-not-a-fov",
           "nested-duplicate-fov-name", "v4-fov-only-in-nuclei", "empty-manifest", "starfish-example-fov-manifest"}
    disagree = sorted(c["name"] for c in CASES.values() if c["starfish"]["loads"] and not c["container"]["ok"])
    assert disagree == sorted(own)
    # and where starfish fails, the container never accepts
    assert [c["name"] for c in CASES.values() if not c["starfish"]["loads"] and c["container"]["ok"]] == []


# ---------------------------------------------------------------------------------------
# the FovSource process-fov gets

def test_check_fov_gives_the_fov_its_tiles_and_its_other_images(tmp_path):
    experiment = materialise(CASES["v5-with-nuclei"], tmp_path)
    source = spacetx.check_fov(experiment, 1)
    assert (source.index, source.name, source.version) == (1, "fov_001", "5.0.0")
    assert source.tileset_url == str(tmp_path / "primary_images-fov_001.json")
    assert [os.path.basename(t.url) for t in source.tiles] == [
        "primary_images-fov_001-c0-r0-z0.tiff", "primary_images-fov_001-c1-r0-z0.tiff",
        "primary_images-fov_001-c0-r1-z0.tiff", "primary_images-fov_001-c1-r1-z0.tiff"]
    tile = source.tiles[0]
    with open(tile.url, "rb") as fh:
        assert tile.sha256 == hashlib.sha256(fh.read()).hexdigest()
    assert (tile.tile_format, tile.position, tile.tileset_url) == ("TIFF", 0, source.tileset_url)
    assert sorted(source.images) == ["nuclei", "primary"]
    assert source.images["nuclei"][0] == str(tmp_path / "nuclei-fov_001.json")


def test_references_resolve_where_slicedimage_opens_them(tmp_path):
    """../ stays relative to the document that wrote it; %20 is a space; absolute and file://
    references are used as written (a local experiment)."""
    source = spacetx.check_fov(materialise(CASES["sibling-folder-reference"], tmp_path), 0)
    assert os.path.realpath(source.tileset_url) == str(tmp_path / "other" / "primary_images-fov_000.json")
    assert all(os.path.dirname(os.path.realpath(t.url)) == str(tmp_path / "other") for t in source.tiles)
    source = spacetx.check_fov(materialise(CASES["percent-encoded-reference"], tmp_path / "pct"), 0)
    assert source.tiles[0].file == "primary_images-fov_000%20c0-r0-z0.tiff"
    assert source.tiles[0].url == str(tmp_path / "pct" / "primary_images-fov_000 c0-r0-z0.tiff")
    source = spacetx.check_fov(materialise(CASES["file-url-reference"], tmp_path / "url"), 0)
    assert source.tileset_url == str(tmp_path / "url" / "primary_images-fov_000.json")


def test_a_file_url_experiment_is_local_data(tmp_path):
    experiment = materialise(CASES["names-with-spaces"], tmp_path)
    url = "file://" + experiment.replace(" ", "%20")
    source = spacetx.check_fov(url, 1)
    assert source.tileset_url == str(tmp_path / "my experiment" / "primary_images-fov_001.json")
    spacetx.verify_tiles(source)


# ---------------------------------------------------------------------------------------
# exit codes: 2 when the request cannot be served, 1 when the data is not what starfish reads

@pytest.mark.parametrize("name, code", [
    ("fov-not-in-experiment", 2), ("fov-names-not-numbered", 2), ("fov-names-duplicate-number", 2),
    ("http-reference", 2), ("experiment-not-json", 2),
    ("extras-missing", 1), ("version-6", 1), ("codeword-without-v", 1), ("sha256-mismatch", 1),
    ("tile-file-missing", 1), ("tile-set-missing-other-fov", 1),
])
def test_exit_codes(name, code, tmp_path):
    ok, error = outcome(materialise(CASES[name], tmp_path), CASES[name]["container"]["fov"])
    assert not ok and error.code == code, error


def test_a_missing_experiment_is_a_bad_request(tmp_path):
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.check_fov(str(tmp_path / "nope" / "experiment.json"), 0)
    assert info.value.code == 2
    assert info.value.message == "experiment not found: %s" % (tmp_path / "nope" / "experiment.json")


# ---------------------------------------------------------------------------------------
# checksums

def _one_tile_experiment(tmp_path, content, declared=None):
    """A valid one-FOV experiment whose only tile holds ``content`` and declares ``declared``
    (its real sha256 when None)."""
    case = json.loads(json.dumps(CASES["v5-flat"]))
    files = case["files"]
    tileset = files["primary_images-fov_000.json"]
    tileset["tiles"] = tileset["tiles"][:1]
    tileset["tiles"][0]["sha256"] = hashlib.sha256(content).hexdigest() if declared is None else declared
    experiment = materialise(case, tmp_path)
    with open(str(tmp_path / tileset["tiles"][0]["file"]), "wb") as fh:
        fh.write(content)
    return experiment


def test_a_tile_larger_than_a_read_is_hashed_whole(tmp_path):
    content = os.urandom(spacetx.CHUNK * 2 + 17)
    source = spacetx.check_fov(_one_tile_experiment(tmp_path, content), 0)
    spacetx.verify_tiles(source)  # no error: the digest covers every chunk
    changed = content[:-1] + bytes([content[-1] ^ 1])  # the last byte of the last chunk
    with open(source.tiles[0].url, "wb") as fh:
        fh.write(changed)
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.verify_tiles(source)
    message = info.value.message
    assert source.tiles[0].url in message and "tiles[0] in %s" % source.tileset_url in message
    assert "expected %s" % hashlib.sha256(content).hexdigest() in message
    assert "the file's is %s" % hashlib.sha256(changed).hexdigest() in message


def test_check_fov_reads_no_tile_and_verify_tiles_only_those_with_a_sha256(tmp_path, monkeypatch):
    experiment = materialise(CASES["sha256-absent"], tmp_path)  # FOV 0 without, FOV 1 with sha256
    opened = []
    real_open = open

    def recording_open(path, *args, **kwargs):
        opened.append(os.path.basename(str(path)))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", recording_open)
    source0 = spacetx.check_fov(experiment, 0)
    source1 = spacetx.check_fov(experiment, 1)
    assert not [name for name in opened if name.endswith(".tiff")]
    spacetx.verify_tiles(source0)
    assert not [name for name in opened if name.endswith(".tiff")]
    spacetx.verify_tiles(source1)
    assert sorted(name for name in opened if name.endswith(".tiff")) == sorted(
        os.path.basename(t.url) for t in source1.tiles)


def test_a_tile_removed_after_the_check_is_not_found_when_verified(tmp_path):
    source = spacetx.check_fov(_one_tile_experiment(tmp_path, b"pixels"), 0)
    os.remove(source.tiles[0].url)
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.verify_tiles(source)
    assert info.value.message == "FOV 0: tile not found: %s (tiles[0].file in %s)" % (
        source.tiles[0].url, source.tileset_url)
    assert info.value.code == 1


def test_a_tile_that_cannot_be_read_says_why(tmp_path):
    source = spacetx.check_fov(_one_tile_experiment(tmp_path, b"pixels"), 0)
    os.remove(source.tiles[0].url)
    os.mkdir(source.tiles[0].url)  # a folder where the tile should be
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.verify_tiles(source)
    assert info.value.message == "FOV 0: tile %s (tiles[0] in %s) could not be read: Is a directory (EISDIR)" % (
        source.tiles[0].url, source.tileset_url)


@pytest.mark.parametrize("declared, says", [
    ("", "must be 64 lower-case hex digits"),
    ("abc", "must be 64 lower-case hex digits"),
    (hashlib.sha256(b"pixels").hexdigest().upper(), "is in upper case"),
])
def test_a_sha256_that_can_never_match_is_refused_before_reading(declared, says, tmp_path):
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.check_fov(_one_tile_experiment(tmp_path, b"pixels", declared=declared), 0)
    assert says in info.value.message and "tiles[0].sha256" in info.value.message


# ---------------------------------------------------------------------------------------
# experiments on S3 (the in-memory client of starfish_io) and the URL policy

class StreamingS3(sio.FakeS3Client):
    """The fake client, with bodies that record the size of each read."""

    def __init__(self):
        sio.FakeS3Client.__init__(self)
        self.reads = []

    def get_object(self, Bucket, Key):
        body = sio.FakeS3Client.get_object(self, Bucket, Key)["Body"]
        reads = self.reads

        class Body(object):
            def read(self, amount=None):
                reads.append((Key, amount))
                return body.read() if amount is None else body.read(amount)
        return {"Body": Body()}


@pytest.fixture
def s3():
    client = StreamingS3()
    sio.set_s3_client(client)
    yield client
    sio.set_s3_client(None)


def upload(client, case, tmp_path, bucket="lab-data", prefix="iss/"):
    """The case's files in the fake bucket under ``prefix``; returns the experiment's s3 URL."""
    materialise(case, tmp_path)
    for rel in case["files"]:
        with open(os.path.join(str(tmp_path), *rel.split("/")), "rb") as fh:
            client.put_object(Bucket=bucket, Key=prefix + rel, Body=fh.read())
    return "s3://%s/%s%s" % (bucket, prefix, case["experiment"])


def test_an_s3_experiment_reads_each_document_once_and_streams_tiles(s3, tmp_path):
    experiment = upload(s3, CASES["nested-collections"], tmp_path)
    source = spacetx.check_fov(experiment, 2)
    assert source.tileset_url == "s3://lab-data/iss/primary_images-batch_b-fov_002.json"
    assert source.tiles[0].url == "s3://lab-data/iss/primary_images-batch_b-fov_002-c0-r0-z0.tiff"
    json_reads = [key for key, _ in s3.reads if key.endswith(".json")]
    assert sorted(json_reads) == sorted(set(json_reads))  # every document read once
    # experiment, codebook, 3 manifests and this FOV's tile set: the other FOVs' tile sets are
    # their own jobs' to read (a run of N FOVs reads N tile sets, not N squared)
    assert len(json_reads) == 6
    assert not [key for key in json_reads if "fov_000" in key or "fov_001" in key]
    assert not [key for key, _ in s3.reads if not key.endswith(".json")]  # check_fov reads no tile
    del s3.reads[:]
    spacetx.verify_tiles(source)
    assert sorted({key for key, _ in s3.reads}) == sorted(t.url[len("s3://lab-data/"):] for t in source.tiles)
    assert {amount for _, amount in s3.reads} == {spacetx.CHUNK}  # streamed, never read whole


def test_an_s3_tile_that_does_not_match_or_is_missing(s3, tmp_path):
    experiment = upload(s3, CASES["v5-flat"], tmp_path)
    source = spacetx.check_fov(experiment, 0)
    s3.put_object(Bucket="lab-data", Key="iss/primary_images-fov_000-c1-r0-z0.tiff", Body=b"changed")
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.verify_tiles(source)
    assert info.value.message.startswith(
        "FOV 0: tile s3://lab-data/iss/primary_images-fov_000-c1-r0-z0.tiff does not match its sha256 (tiles[1] in "
        "s3://lab-data/iss/primary_images-fov_000.json): expected ")
    assert hashlib.sha256(b"changed").hexdigest() in info.value.message
    s3.delete_object(Bucket="lab-data", Key="iss/primary_images-fov_000-c1-r0-z0.tiff")
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.verify_tiles(source)
    assert info.value.message == ("FOV 0: tile not found: s3://lab-data/iss/primary_images-fov_000-c1-r0-z0.tiff "
                                  "(tiles[1].file in s3://lab-data/iss/primary_images-fov_000.json)")


def test_s3_keys_are_what_slicedimage_asks_for(s3, tmp_path):
    """Spaces stay spaces, a %20 in a name is decoded, ../ is kept in the key as S3Backend keeps
    it, an s3:// URL is used as written."""
    case = json.loads(json.dumps(CASES["v5-flat"]))
    tileset = case["files"]["primary_images-fov_000.json"]
    tileset["tiles"][0]["file"] = "raw tiles/a b.tiff"
    tileset["tiles"][1]["file"] = "a%20c.tiff"
    tileset["tiles"][2]["file"] = "../shared/r1.tiff"
    tileset["tiles"][3]["file"] = "s3://other-bucket/r1c1.tiff"
    for t in tileset["tiles"]:
        t.pop("sha256")
    experiment = upload(s3, case, tmp_path)
    urls = [t.url for t in spacetx.check_fov(experiment, 0).tiles]
    assert urls == ["s3://lab-data/iss/raw tiles/a b.tiff", "s3://lab-data/iss/a c.tiff",
                    "s3://lab-data/iss/../shared/r1.tiff", "s3://other-bucket/r1c1.tiff"]


def test_an_absolute_path_in_a_remote_experiment_is_refused_saying_what_starfish_would_read(s3, tmp_path):
    case = json.loads(json.dumps(CASES["v5-flat"]))
    case["files"]["primary_images-fov_000.json"]["tiles"][3]["file"] = "/elsewhere/r1c1.tiff"
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.check_fov(upload(s3, case, tmp_path), 0)
    assert info.value.code == 2
    assert info.value.message.startswith("tiles[3].file in s3://lab-data/iss/primary_images-fov_000.json: "
                                         "/elsewhere/r1c1.tiff is refused: a remote experiment may not refer to files")
    assert info.value.message.endswith("(starfish itself would read s3://lab-data/elsewhere/r1c1.tiff there; write "
                                       "that URL if it is what you mean)")


@pytest.mark.parametrize("field, ref", [
    ("images.primary", "file:///etc/passwd"),
    ("codebook", "http://169.254.169.254/latest/codebook.json"),
    ("contents.fov_000", "https://[fd00:ec2::254]/latest/fov.json"),
    ("tiles[0].file", "file:///root/.aws/credentials"),
])
def test_a_remote_experiment_cannot_lead_the_reader_to_the_machine_or_the_network(s3, tmp_path, field, ref):
    case = json.loads(json.dumps(CASES["v5-flat"]))
    files = case["files"]
    holder = {"images.primary": ("experiment.json", lambda d: d["images"].update(primary=ref)),
              "codebook": ("experiment.json", lambda d: d.update(codebook=ref)),
              "contents.fov_000": ("primary_images.json", lambda d: d["contents"].update(fov_000=ref)),
              "tiles[0].file": ("primary_images-fov_000.json", lambda d: d["tiles"][0].update(file=ref))}[field]
    holder[1](files[holder[0]])
    experiment = upload(s3, case, tmp_path)
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.check_fov(experiment, 0)
    assert info.value.code == 2
    assert info.value.message.startswith("%s in s3://lab-data/iss/%s: %s is refused" % (field, holder[0], ref))


def test_a_refused_tile_reference_is_refused_by_the_job_of_its_fov(s3, tmp_path):
    """A job reads its own FOV's path only: FOV 0's job never reads FOV 1's tile set, hostile
    reference included, and FOV 1's job refuses it before the recipe runs."""
    case = json.loads(json.dumps(CASES["v5-flat"]))
    case["files"]["primary_images-fov_001.json"]["tiles"][2]["file"] = "file:///root/.aws/credentials"
    experiment = upload(s3, case, tmp_path)
    assert spacetx.check_fov(experiment, 0).name == "fov_000"
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.check_fov(experiment, 1)
    assert info.value.code == 2
    assert info.value.message.startswith("tiles[2].file in s3://lab-data/iss/primary_images-fov_001.json: "
                                         "file:///root/.aws/credentials is refused")


def test_an_https_experiment_at_a_private_address_is_refused_before_any_read():
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.check_fov("https://127.0.0.1/iss/experiment.json", 0)
    assert info.value.code == 2 and "loopback" in info.value.message


# ---------------------------------------------------------------------------------------
# large experiments

def test_a_thousand_fov_experiment_is_checked_from_its_documents(tmp_path):
    """Every tile set is parsed (as from_json does), and FOV 999 of fov_000..fov_999 is found."""
    fovs = ["fov_%03d" % i for i in range(1000)]
    tileset = CASES["v5-flat"]["files"]["primary_images-fov_000.json"]
    root = str(tmp_path)
    for rel in ("experiment.json", "codebook.json"):
        with open(os.path.join(root, rel), "w") as fh:
            json.dump(CASES["v5-flat"]["files"][rel], fh)
    with open(os.path.join(root, "primary_images.json"), "w") as fh:
        json.dump({"version": "0.1.0", "contents": {n: "primary_images-%s.json" % n for n in fovs}}, fh)
    for n in fovs:
        with open(os.path.join(root, "primary_images-%s.json" % n), "w") as fh:
            json.dump(dict(tileset, tiles=[dict(t, file=t["file"].replace("fov_000", n)) for t in tileset["tiles"]]),
                      fh)
    for t in tileset["tiles"]:
        with open(os.path.join(root, t["file"].replace("fov_000", "fov_999")), "w") as fh:
            fh.write("tile")
    source = spacetx.check_fov(os.path.join(root, "experiment.json"), 999)
    assert source.name == "fov_999" and len(source.tiles) == 4


def test_the_bundled_synthetic_experiment_passes(synthetic):
    """examples/synthetic-iss writes what starfish reads: every FOV checks and verifies."""
    for fov in range(4):
        source = spacetx.check_fov(synthetic, fov)
        assert source.name == "fov_%03d" % fov
        spacetx.verify_tiles(source)


def test_a_manifest_that_lists_itself_is_refused_not_followed_for_ever(tmp_path):
    case = json.loads(json.dumps(CASES["v5-flat"]))
    case["files"]["primary_images.json"]["contents"]["again"] = "primary_images.json"
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.check_fov(materialise(case, tmp_path), 0)
    assert info.value.message == ("%s: collections nested more than 16 deep under it (a manifest that lists "
                                  "itself?)" % (tmp_path / "primary_images.json"))


# ---------------------------------------------------------------------------------------
# an https experiment, from a local TLS server (test/fixtures/tls: a test-only CA for data.lab.test)

TLS = os.path.join(REPO, "test", "fixtures", "tls")


@pytest.fixture
def https_root(tmp_path):
    """Serves tmp_path over TLS as https://data.lab.test:<port>/ (resolved to loopback, admitted
    for the test only); yields (base URL, folder, the paths asked for)."""
    import http.server
    import ssl
    import threading
    import urllib.parse as up
    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            path = os.path.join(str(tmp_path), up.unquote(self.path.lstrip("/")))
            body = open(path, "rb").read() if os.path.isfile(path) else None
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(TLS, "server.crt"), os.path.join(TLS, "server.key"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sio.set_https_test_options(resolve=lambda host: ["127.0.0.1"],
                               context=ssl.create_default_context(cafile=os.path.join(TLS, "ca.crt")),
                               test_only_addresses=("127.0.0.1",))
    try:
        yield "https://data.lab.test:%d" % server.server_address[1], tmp_path, asked
    finally:
        sio.set_https_test_options()
        server.shutdown()
        server.server_close()


def test_an_https_experiment_resolves_and_verifies_over_https(https_root):
    base, folder, asked = https_root
    materialise(CASES["names-with-spaces"], folder)
    source = spacetx.check_fov(base + "/my%20experiment/experiment.json", 1)
    assert source.tileset_url == base + "/my%20experiment/primary_images-fov_001.json"
    assert source.tiles[0].url == base + "/my%20experiment/primary_images-fov_001%20c0-r0-z0.tiff"
    del asked[:]
    spacetx.verify_tiles(source)
    assert sorted(asked) == sorted(t.url[len(base):] for t in source.tiles)
    with open(str(folder / "my experiment" / "primary_images-fov_001 c0-r0-z0.tiff"), "w") as fh:
        fh.write("changed")
    with pytest.raises(spacetx.FormatError) as info:
        spacetx.verify_tiles(source)
    assert info.value.message.startswith("FOV 1: tile %s does not match its sha256" % source.tiles[0].url)


def test_a_packed_child_reads_the_experiments_documents_once(s3, tmp_path):
    """Within reading_once() (what process-fov wraps a chunk in), checking several FOVs reads
    experiment.json, the codebook and the collections once, and each FOV's tile set once."""
    experiment = upload(s3, CASES["nested-collections"], tmp_path)
    with spacetx.reading_once():
        for fov in (0, 1, 2):
            spacetx.check_fov(experiment, fov)
    json_reads = [key for key, _ in s3.reads if key.endswith(".json")]
    assert sorted(json_reads) == sorted(set(json_reads))
    # experiment, codebook, 3 collections, 3 tile sets
    assert len(json_reads) == 8
    del s3.reads[:]
    spacetx.check_fov(experiment, 0)  # outside the block, nothing is kept
    assert len([key for key, _ in s3.reads if key.endswith(".json")]) == 6
