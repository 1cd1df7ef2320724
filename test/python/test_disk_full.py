"""Disk full (issue 12): a job succeeds only with every file it writes whole; otherwise it exits
non-zero with the file, the reason and the next step as its last line, and leaves nothing that
looks complete (no summary.json, no partial file, no temporary file).

Two ways to fill the disk, each at several sizes:

* an injected writer at starfish_io's file-write edge (always): starfish_io's ``os`` is replaced by
  a stand-in whose files take N more bytes in all, then fail as a full disk does (the bytes that
  fit are written); the jobs run in this process;
* a real tmpfs of a few pages (when the tests run as root and may mount), filled to leave
  0, 1, 2… pages free; the jobs run as subprocesses, as the local runner starts them.
"""
import csv
import errno
import io
import json
import os
import random
import re
import subprocess

import pytest

from conftest import MERGE_RESULTS, PROCESS_FOV, RUN_ID, run_script

import merge_results as mr
import process_fov as pf
import starfish_io as sio

PAGE = 4096
# the order merge-results writes its files in: summary.json last
WRITE_ORDER = ["spots.csv", "spots.png", "counts_matrix.csv", "fov_quality.csv", "overview.png", "summary.json"]
RESULT_FILES = sorted(WRITE_ORDER)
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
GENES = ["ACTB", "GAPDH", "VIM", "KRT8", "MALAT1", "EEF1A1"]

# A recipe with enough spots that its table spans several pages (no image work: fast).
MANY_SPOTS_RECIPE = '''
def process_fov(fov_index, experiment_url):
    return [{"x": 1.5 + i, "y": 2.25 * i, "z": i % 3, "target": "GENE_%03d" % (i % 50), "quality": 0.5}
            for i in range(400)]
'''


# ---------------------------------------------------------------------------------------
# the injected full disk

class FullDisk(object):
    """Stands in for ``os`` inside starfish_io: files opened with ``fdopen`` take ``free`` more
    bytes in all, then raise OSError(``code``) with what fitted written, as a full disk does."""

    def __init__(self, free, code=errno.ENOSPC):
        self.free = free
        self.code = code

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, *args, **kwargs):
        return _LimitedFile(os.fdopen(fd, *args, **kwargs), self)


class _LimitedFile(object):
    def __init__(self, fh, disk):
        self.fh = fh
        self.disk = disk

    def write(self, data):
        n = max(0, min(len(data), self.disk.free))
        self.fh.write(data[:n])
        self.disk.free -= n
        if n < len(data):
            self.fh.flush()
            raise OSError(self.disk.code, os.strerror(self.disk.code))
        return n

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def last_line(text):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------------------------------
# merge-results

def write_tables(out, fovs=3, rows=60, seed=7):
    """Per-FOV tables as process-fov writes them."""
    rnd = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    for fov in range(fovs):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["fov", "x", "y", "z", "target", "quality"])
        for _ in range(rows):
            w.writerow([fov, "%.2f" % rnd.uniform(0, 256), "%.2f" % rnd.uniform(0, 256), rnd.randint(0, 2),
                        rnd.choice(GENES), "%.3f" % rnd.random()])
        with open(os.path.join(out, "fov_%03d.csv" % fov), "w") as fh:
            fh.write(buf.getvalue())


def merge_env(out, results):
    return {"STARFISH_RUN_ID": RUN_ID, "STARFISH_FOVS": "0-2", "STARFISH_FOV_OUTPUT": out,
            "STARFISH_RESULTS_OUTPUT": results}


def read_all(folder):
    if not os.path.isdir(folder):
        return {}
    out = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as fh:
            out[name] = fh.read()
    return out


@pytest.fixture
def merge_case(tmp_path):
    """FOV tables, and the three files a merge with room writes from them (the reference)."""
    out = str(tmp_path / "fovs")
    write_tables(out)
    reference_dir = str(tmp_path / "reference")
    r = run_script(MERGE_RESULTS, **merge_env(out, reference_dir))
    assert r.code == 0, r
    reference = read_all(reference_dir)
    assert sorted(reference) == RESULT_FILES
    return out, reference


def write_failure_line(name, folder, said="No space left on device (ENOSPC)",
                       step="free space in STARFISH_HOME"):
    return "merge-results: could not write %s to %s: %s; %s and run /starfish retry %s" % (
        name, folder, said, step, RUN_ID)


def assert_whole_or_failed(code, line, results, reference):
    """Exit 0 with all three files whole, or non-zero with the reason and no summary.json; never a
    partial or temporary file."""
    found = read_all(results)
    assert not [n for n in found if n not in RESULT_FILES], sorted(found)  # no temporary file left
    for name, body in found.items():
        if name.endswith(".png"):
            assert body.startswith(b"\x89PNG") and body.endswith(PNG_END), "a cut-short %s" % name
        else:
            assert body == reference[name], "a partial %s" % name
    if code == 0:
        assert sorted(found) == RESULT_FILES
        return None
    assert code == 1
    assert "summary.json" not in found, "a failed merge left a summary that looks complete"
    failed = re.match(r"^merge-results: could not write (\S+) to ", line)
    assert failed, line
    return failed.group(1)


def merge_in_process(capsys, monkeypatch, out, results, disk):
    with monkeypatch.context() as m:
        m.setattr(sio, "os", disk)
        code = mr.main(merge_env(out, results))
    return code, last_line(capsys.readouterr().err)


def test_merge_on_an_injected_full_disk_at_every_boundary(merge_case, tmp_path, capsys, monkeypatch):
    out, reference = merge_case
    # (bytes the disk takes, the file that does not fit: None when all fit): at each file's first,
    # middle and last byte, in the order they are written
    cases, before = [], 0
    for name in WRITE_ORDER:
        n = len(reference[name])
        cases += [(before, name), (before + n // 2, name), (before + n - 1, name)]
        before += n
    cases += [(1, "spots.csv"), (before, None)]
    for i, (free, fails_at) in enumerate(cases):
        results = str(tmp_path / ("results-%d" % i))
        code, line = merge_in_process(capsys, monkeypatch, out, results, FullDisk(free))
        failed = assert_whole_or_failed(code, line, results, reference)
        assert failed == fails_at, (free, line)
        if failed:
            assert line == write_failure_line(failed, results)


def test_a_failed_merge_removes_the_summary_an_earlier_merge_wrote(merge_case, tmp_path, capsys, monkeypatch):
    out, reference = merge_case
    results = str(tmp_path / "results")
    os.makedirs(results)
    for name, body in reference.items():  # an earlier, complete merge
        with open(os.path.join(results, name), "wb") as fh:
            fh.write(body)
    code, line = merge_in_process(capsys, monkeypatch, out, results, FullDisk(len(reference["spots.csv"])))
    assert code == 1 and line == write_failure_line("spots.png", results)
    # the earlier merge's other files, but no summary
    assert sorted(os.listdir(results)) == [n for n in RESULT_FILES if n != "summary.json"]


@pytest.mark.parametrize("code, said, step", [
    (errno.EIO, "Input/output error (EIO)", "check the disk that holds {}"),
    (errno.EACCES, "Permission denied (EACCES)", "make {} writable"),
    (errno.EROFS, "Read-only file system (EROFS)", "move STARFISH_HOME to a writable disk ({} is read-only)"),
])
def test_merge_names_other_write_errors_with_their_next_step(merge_case, tmp_path, capsys, monkeypatch, code, said, step):
    out, reference = merge_case
    results = str(tmp_path / "results")
    rc, line = merge_in_process(capsys, monkeypatch, out, results, FullDisk(len(reference["spots.csv"]), code))
    assert rc == 1
    assert line == write_failure_line("spots.png", results, said, step.format(results))


def test_a_plot_that_cannot_be_drawn_fails_the_merge(merge_case, tmp_path, capsys, monkeypatch):
    out, reference = merge_case
    results = str(tmp_path / "results")

    def broken(*args):
        raise RuntimeError("no  fonts")
    monkeypatch.setattr(mr, "plot", broken)
    assert mr.main(merge_env(out, results)) == 1
    assert last_line(capsys.readouterr().err) == "merge-results: could not draw spots.png: RuntimeError: no fonts"
    assert sorted(os.listdir(results)) == ["spots.csv"]


# ---------------------------------------------------------------------------------------
# process-fov

def fov_env(experiment, recipe, out):
    return {"STARFISH_RUN_ID": RUN_ID, "STARFISH_EXPERIMENT": experiment, "STARFISH_RECIPE": recipe,
            "STARFISH_FOVS": "0", "STARFISH_FOV_OUTPUT": out}


@pytest.fixture
def fov_case(synthetic, tmp_path):
    """The many-spots recipe, and the table a FOV job with room writes (the reference)."""
    recipe = str(tmp_path / "many_spots.py")
    with open(recipe, "w") as fh:
        fh.write(MANY_SPOTS_RECIPE)
    reference_dir = str(tmp_path / "reference")
    r = run_script(PROCESS_FOV, **fov_env(synthetic, recipe, reference_dir))
    assert r.code == 0, r
    with open(os.path.join(reference_dir, "fov_000.csv"), "rb") as fh:
        table = fh.read()
    assert len(table) > 3 * PAGE
    return synthetic, recipe, table


def fov_failure_line(out):
    return ("process-fov: FOV 0: could not write fov_000.csv to %s: No space left on device (ENOSPC); "
            "free space in STARFISH_HOME and run /starfish retry %s" % (out, RUN_ID))


def assert_fov_whole_or_failed(code, line, out, table):
    found = read_all(out)
    # the FOV's measurements (containers/README.md, "Metrics") go last, when the disk has room left;
    # they never decide the outcome
    metrics = found.pop("fov_000.metrics.json", None)
    if metrics is not None:
        assert json.loads(metrics.decode())["fov"] == 0
    assert set(found) <= {"fov_000.csv", "fov_000.error.json"}, sorted(found)  # no temporary file left
    if code == 0:
        assert found == {"fov_000.csv": table}
        return
    assert code == 1
    assert "fov_000.csv" not in found, "a failed FOV job left a table"
    assert line == fov_failure_line(out)
    if "fov_000.error.json" in found:  # written when the disk had room for it after all
        assert json.loads(found["fov_000.error.json"].decode()) == {"fov": 0, "reason": line[len("process-fov: "):]}


def test_process_fov_on_an_injected_full_disk(fov_case, tmp_path, capsys, monkeypatch):
    experiment, recipe, table = fov_case
    for i, free in enumerate([0, 1, PAGE, len(table) - 1, len(table)]):
        out = str(tmp_path / ("fovs-%d" % i))
        with monkeypatch.context() as m:
            m.setattr(sio, "os", FullDisk(free))
            code = pf.main(fov_env(experiment, recipe, out))
        line = last_line(capsys.readouterr().err)
        assert_fov_whole_or_failed(code, line, out, table)
        assert (code == 0) == (free >= len(table)), (free, line)


# ---------------------------------------------------------------------------------------
# a real full disk: a small tmpfs

@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs (root only); ``fill(pages)`` leaves that many pages free."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs (the injected full disk above covers the jobs)")
    disk = str(tmp_path / "disk")
    os.makedirs(disk)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", disk],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if r.returncode != 0:
        pytest.skip("mount -t tmpfs is not allowed here (%s)" % r.stderr.strip())
    try:
        yield disk
    finally:
        subprocess.run(["umount", disk])


def fill(disk, free_pages):
    """Fills ``disk`` with one file, then gives back ``free_pages`` pages."""
    filler = os.path.join(disk, "filler")
    written = 0
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                written += fh.write(b"\1" * PAGE)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        fh.truncate(max(0, written - free_pages * PAGE))
    return filler


def pages(n):
    return (n + PAGE - 1) // PAGE


def test_merge_on_a_full_tmpfs_at_several_sizes(merge_case, tiny_disk):
    out, reference = merge_case
    exact, total = {}, 0
    for name in WRITE_ORDER:  # the pages before each file: it is the one that does not fit
        exact.setdefault(total, name)
        total += pages(len(reference[name]))
    exact[total] = None
    for free in sorted(set(range(0, total + 1)) | set(exact)):
        results = os.path.join(tiny_disk, "results-%d" % free)
        filler = fill(tiny_disk, free)
        r = run_script(MERGE_RESULTS, **merge_env(out, results))
        failed = assert_whole_or_failed(r.code, r.last_line, results, reference)
        if failed:
            assert r.last_line == write_failure_line(failed, results), r
        if free in exact:
            assert failed == exact[free], (free, r)
        subprocess.run(["rm", "-rf", results, filler], check=True)


def test_process_fov_on_a_full_tmpfs_at_several_sizes(fov_case, tiny_disk):
    experiment, recipe, table = fov_case
    for free in (0, 1, pages(len(table)) - 1, pages(len(table))):
        out = os.path.join(tiny_disk, "fovs-%d" % free)
        filler = fill(tiny_disk, free)
        r = run_script(PROCESS_FOV, **fov_env(experiment, recipe, out))
        assert_fov_whole_or_failed(r.code, r.last_line, out, table)
        assert (r.code == 0) == (free >= pages(len(table))), r
        if free == 0:  # nothing fits, not even the error record: the log says so before the reason
            assert "process-fov: warning: could not write %s: No space left on device (ENOSPC)" % os.path.join(out, "fov_000.error.json") in r.stderr
        if free == 1:  # the table's temporary file is gone, so the error record fits
            assert "fov_000.error.json" in os.listdir(out)
        subprocess.run(["rm", "-rf", out, filler], check=True)
