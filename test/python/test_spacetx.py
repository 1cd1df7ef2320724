"""containers/common/spacetx.py: the SpaceTx reader process-fov runs before a recipe.

The conformance table (test/fixtures/spacetx/cases.json, written by build_cases.py from the real
starfish and slicedimage sources) drives check_fov and verify_tiles over every format variant;
the focused tests below pin what a scientist sees: the messages, the resolved locations, the
checksum streaming, the URL policy, and S3.
"""
import hashlib
import io
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import PYTHON, REPO

import spacetx
import starfish_io as sio

FIXTURES = os.path.join(REPO, "test", "fixtures", "spacetx")
CASES_JSON = os.path.join(FIXTURES, "cases.json")
with open(CASES_JSON) as _fh:
    TABLE = json.load(_fh)
CASES = {c["name"]: c for c in TABLE["cases"]}


def materialise(case, root):
    """Write the case's files under ``root`` ({{ROOT}} replaced); returns the experiment path."""
    root = str(root)
    for rel, value in case["files"].items():
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(value, dict) and list(value) == ["bytes"]:
            data = value["bytes"].replace("{{ROOT}}", root).encode("ascii")
        else:
            data = json.dumps(value).replace("{{ROOT}}", root).encode("utf-8")
        with open(path, "wb") as fh:
            fh.write(data)
    return os.path.join(root, *case["experiment"].split("/"))


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
    names = [c["name"] for c in TABLE["cases"]]
    assert len(names) == len(set(names))
    for c in TABLE["cases"]:
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
           "nested-duplicate-fov-name", "v4-fov-only-in-nuclei", "empty-manifest"}
    disagree = sorted(c["name"] for c in TABLE["cases"] if c["starfish"]["loads"] and not c["container"]["ok"])
    assert disagree == sorted(own)
    # and where starfish fails, the container never accepts
    assert [c["name"] for c in TABLE["cases"] if not c["starfish"]["loads"] and c["container"]["ok"]] == []
