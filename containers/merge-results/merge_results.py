#!/usr/bin/env python3
"""merge-results: merge the per-FOV spot tables of a run into one table + summary + plot.

Entry point of the merge-results image, also run directly by the local runner.
Contract (see containers/README.md):

  STARFISH_RUN_ID          the run id, e.g. 261125-k3f9 (in the log and the plot's title)
  STARFISH_FOVS            the FOVs the run expects as range text, e.g. 0-3 or 1-3,7,9-12
  STARFISH_FOV_OUTPUT      URL/path where the FOV jobs wrote fov_NNN.csv / .error.json / .metrics.json
  STARFISH_RESULTS_OUTPUT  URL/path where the results go: spots.csv, counts_matrix.csv,
                           fov_quality.csv, overview.png, spots.png (runs of at most 16 FOVs), summary.json
  STARFISH_RECIPE          optional: the recipe's URL, for its sha256 and PARAMETERS in summary.json

spots.csv has the six columns every FOV table starts with (fov,x,y,z,target,quality), then the
union of the tables' other columns (starfish's physical xc, yc, zc first); a FOV's rows pass
through unchanged when its columns are those, else its values are placed under them. A
header-only table is a FOV processed with 0 spots. summary.json's "compute" totals the FOVs'
fov_NNN.metrics.json (absent when no FOV wrote one: an older image), and fov_quality.csv takes
each FOV's registration shift from it when the recipe reported one; summary.json's "recipe" has
the recipe's sha256 and its PARAMETERS, read from its text (never run).

Exit 0 when at least one FOV table was merged and every result file is written, 1 when none was
found or a file could not be written or drawn, 2 on a bad environment.

Each file is written whole or not at all (a temporary name, then a rename), and summary.json
last: it is there only when this merge finished. An earlier merge's summary.json is removed
first, so a merge that fails half way (a full disk) leaves no summary that looks complete; its
last line on stderr says which file, why, and what to do, e.g. "merge-results: could not write
spots.png to …/results: No space left on device (ENOSPC); free space in STARFISH_HOME and run
/starfish retry 261125-k3f9".
"""
import ast
import collections
import csv
import io
import json
import math
import os
import re
import sys
import time
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
for _cand in (os.path.join(_HERE, "..", "common"), os.path.join(_HERE, "common"), _HERE):
    if os.path.exists(os.path.join(_cand, "starfish_io.py")):
        sys.path.insert(0, os.path.abspath(_cand))
        break

import starfish_io as sio  # noqa: E402

PREFIX = "merge-results: "
LEADING = ["fov", "x", "y", "z", "target", "quality"]  # the contract: every table starts with these
HEADER = ",".join(LEADING)
PHYSICAL = ("xc", "yc", "zc")       # starfish's physical coordinates: first after the six when present
MAX_TABLE_EXTRAS = 32               # process-fov writes at most this many further columns
MAX_MERGED_EXTRAS = 64              # further columns of spots.csv (union over the FOVs); more are dropped
COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")  # the names process-fov writes
NO_TABLE = "no output table"
# spots.png (one panel per FOV) is drawn for runs of at most this many FOVs in STARFISH_FOVS:
# 16 panels of 2.2 inches still show each FOV's spots; a larger run has overview.png alone.
PANEL_FOVS = 16
POINTS_PER_PANEL = 3000
MAX_LEGEND_GENES = 19
MAX_MISSING_LINES = 20
TABLE_RE = re.compile(r"^fov_(\d{3,})\.csv$")
ERROR_RE = re.compile(r"^fov_(\d{3,})\.error\.json$")
METRICS_RE = re.compile(r"^fov_(\d{3,})\.metrics\.json$")
READ_THREADS = 32  # for s3:// (many small GETs); local reads are sequential


class Failure(Exception):
    def __init__(self, reason, code):
        Exception.__init__(self, reason)
        self.reason = reason
        self.code = code


class Job(object):
    """What the environment asks for: read ``fov_output``, write ``results_output``."""
    __slots__ = ("run_id", "expected", "fov_output", "results_output")

    def __init__(self, run_id, expected, fov_output, results_output):
        self.run_id, self.expected = run_id, expected
        self.fov_output, self.results_output = fov_output, results_output


def parse_env(environ):
    """The Job described by the environment; Failure (exit 2) naming a bad variable."""
    try:
        return Job(run_id=sio.require_env(environ, "STARFISH_RUN_ID"),
                   expected=sio.require_fovs_env(environ, "STARFISH_FOVS"),
                   fov_output=sio.require_output_env(environ, "STARFISH_FOV_OUTPUT"),
                   results_output=sio.require_output_env(environ, "STARFISH_RESULTS_OUTPUT"))
    except sio.EnvError as exc:
        raise Failure(str(exc), 2)


# ---------------------------------------------------------------------------------------
# reading

def _read_many(urls, reader):
    """{url: reader(url) or exception}; threaded for remote URLs."""
    remote = any(sio.is_remote(u) for u in urls)
    out = {}
    if remote and len(urls) > 1:
        from concurrent.futures import ThreadPoolExecutor

        def safe(u):
            try:
                return u, reader(u)
            except Exception as exc:  # reported per FOV
                return u, exc
        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
            for u, v in pool.map(safe, urls):
                out[u] = v
    else:
        for u in urls:
            try:
                out[u] = reader(u)
            except Exception as exc:
                out[u] = exc
    return out


MAX_ERROR_BYTES = 16384   # an error record is {"fov": N, "reason": "<one line of at most 600 characters>"}
MAX_ERROR_REASON = 600    # process-fov's MAX_REASON


def _read_error_record(url):
    """An error record's text: job-written, so read no further than MAX_ERROR_BYTES + 1."""
    data = _read_capped(url, MAX_ERROR_BYTES)
    if len(data) > MAX_ERROR_BYTES:
        raise ValueError("over %d bytes" % MAX_ERROR_BYTES)
    return data.decode("utf-8")


def _error_reason(text):
    try:
        obj = json.loads(text)
        reason = obj.get("reason") if isinstance(obj, dict) else None
        if reason:
            return sio.one_line_text(reason, MAX_ERROR_REASON)
    except ValueError:
        pass
    return "failed (unreadable error record)"


class Table(object):
    __slots__ = ("fov", "body", "n", "genes", "sample", "extras", "physical", "quality_sum", "quality_n",
                 "overview", "overview_physical")

    def __init__(self, fov, body, n, genes, sample, extras=(), physical=False):
        self.fov, self.body, self.n, self.genes, self.sample = fov, body, n, genes, sample
        self.extras, self.physical = list(extras), physical
        self.quality_sum, self.quality_n = 0.0, 0    # over the rows with a finite numeric quality
        self.overview, self.overview_physical = [], False

    def mean_quality(self):
        """The mean of the rows' quality; None when no row has a number there."""
        return self.quality_sum / self.quality_n if self.quality_n else None


def _split(line):
    """One CSV line's fields (the csv module only when a field is quoted: the fast path)."""
    return next(csv.reader([line])) if '"' in line else line.split(",")


def parse_header(line):
    """The columns beyond the leading six, checked; ValueError when the header breaks the contract."""
    columns = _split(line.strip().lstrip("\ufeff"))
    if columns[:6] != LEADING:
        raise ValueError("bad header %r (expected %r first)" % (line[:80], HEADER))
    extras = columns[6:]
    bad = [c for c in extras if not COLUMN_RE.match(c) or c.lower() in LEADING]
    if bad:
        raise ValueError("bad column name %r (expected letters, digits, _ and ., like xc)" % bad[0][:80])
    if len(set(c.lower() for c in extras)) != len(extras):
        raise ValueError("a column appears twice in the header")
    if len(extras) > MAX_TABLE_EXTRAS:
        raise ValueError("%d columns beyond %s (at most %d)" % (len(extras), HEADER, MAX_TABLE_EXTRAS))
    return extras


def _plot_point(row, xy):
    """(x, y, target) of one row at the columns ``xy``; None when it has no coordinates there."""
    x, y = row[xy[0]], row[xy[1]]
    if x == "" and y == "":
        return None
    try:
        return float(x), float(y), row[4]
    except ValueError:
        raise ValueError("non-numeric coordinates %r, %r" % (x[:40], y[:40]))


# A cell that starts with = + @ or a quote, or with - and is not a plain decimal number: the lines
# _defused looks at (tables of numbers and gene names, negative coordinates included, pass by).
_MAYBE_FORMULA = re.compile(r'(?:^|,)(?:["=+@]|-(?!\d+(?:\.\d*)?(?:[eE][-+]?\d+)?(?:,|$)))')


def _runs_as_formula(cell):
    """Whether a spreadsheet would run ``cell``: it starts with = + - @ and is not a number."""
    if not cell or cell[0] not in "=+-@":
        return False
    try:
        float(cell)
        return False
    except ValueError:
        return True


def _defused(row, line):
    """The line with every cell a spreadsheet would run as a formula made literal, as process-fov
    writes it (starfish_io.csv_text); the line itself when it has none. A table is job-written, and
    a recipe can write another FOV's table itself; spots.csv is opened in a spreadsheet."""
    if not any(_runs_as_formula(c) for c in row):
        return line
    cells = [sio.csv_text(c, len(c)) if _runs_as_formula(c) else c for c in row]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    return buf.getvalue()


def _finite(text):
    """``text`` as a finite float; None when it is empty, not a number, NaN or infinite."""
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def overview_sample(data, extras, limit):
    """Up to ``limit`` evenly spaced (x, y, target) of the rows for overview.png, and whether they
    are starfish's physical xc, yc (the stage position, so FOVs sit where they were imaged) or,
    when the table has no usable xc, yc, its pixel x, y. Rows without numbers there are skipped:
    the picture is a view, not a check of the table."""
    if not data or limit <= 0:
        return [], False
    step = max(1, -(-len(data) // limit))
    rows = [_split(line) for line in data[::step]]
    candidates = [((1, 2), False)]
    if "xc" in extras and "yc" in extras:
        candidates.insert(0, ((6 + extras.index("xc"), 6 + extras.index("yc")), True))
    for xy, physical in candidates:
        points = []
        for row in rows:
            x, y = _finite(row[xy[0]]), _finite(row[xy[1]])
            if x is not None and y is not None:
                points.append((x, y, row[4]))
        if points:
            return points, physical
    return [], False


def parse_table(fov, text, keep_sample, overview_points=0):
    """Validate one per-FOV table. Returns a Table; raises ValueError when malformed.

    body: the data lines joined with newlines (passed through unchanged), n rows,
    genes: Counter of targets, sample: [(x, y, target)] subsample for the plot (or None): pixel
    x, y, or starfish's physical xc, yc (physical=True) when the recipe gave no pixel coordinates;
    quality_sum/quality_n for the mean quality; overview: up to ``overview_points`` points for
    overview.png (see overview_sample).
    """
    lines = text.splitlines()
    extras = parse_header(lines[0]) if lines else parse_header("")
    width = 6 + len(extras)
    data = lines[1:]
    while data and not data[-1].strip():
        data.pop()
    fov_s = str(fov)
    genes = collections.Counter()
    targets = []
    append = targets.append
    q_sum, q_n = 0.0, 0
    for i, line in enumerate(data):
        row = _split(line)
        if len(row) != width:
            raise ValueError("line %d has %d fields (expected %d)" % (i + 2, len(row), width))
        if row[0] != fov_s:
            raise ValueError("line %d has fov %r (expected %s)" % (i + 2, row[0][:20], fov_s))
        append(row[4])
        if ("=" in line or "@" in line or "+" in line or ",-" in line or '"' in line) and _MAYBE_FORMULA.search(line):
            data[i] = _defused(row, line)
        q = _finite(row[5]) if row[5] else None
        if q is not None:
            q_sum += q
            q_n += 1
    genes.update(targets)
    sample, physical = None, False
    if keep_sample:
        step = max(1, len(data) // POINTS_PER_PANEL + (1 if len(data) % POINTS_PER_PANEL else 0))
        xy = (1, 2)
        first = _split(data[0]) if data else None
        if first is not None and first[1] == "" and "xc" in extras and "yc" in extras:
            xy, physical = (6 + extras.index("xc"), 6 + extras.index("yc")), True
        sample = []
        for line in data[::step]:
            try:
                point = _plot_point(_split(line), xy)
            except ValueError as exc:
                raise ValueError("%s in %r" % (exc, line[:80]))
            if point is not None:
                sample.append(point)
    table = Table(fov, "\n".join(data), len(data), genes, sample, extras, physical)
    table.quality_sum, table.quality_n = q_sum, q_n
    table.overview, table.overview_physical = overview_sample(data, extras, overview_points)
    return table


def merged_columns(tables, log):
    """The columns of spots.csv beyond the leading six: the union over the tables, starfish's
    physical xc, yc, zc first, then in order of first appearance (FOV order); capped."""
    seen = []
    for t in tables:
        seen.extend(c for c in t.extras if c not in seen)
    ordered = [c for c in PHYSICAL if c in seen] + [c for c in seen if c not in PHYSICAL]
    if len(ordered) > MAX_MERGED_EXTRAS:
        log("note: the FOV tables have %d columns beyond %s; spots.csv keeps the first %d, dropped: %s"
            % (len(ordered), HEADER, MAX_MERGED_EXTRAS, ", ".join(ordered[MAX_MERGED_EXTRAS:])[:300]))
    return ordered[:MAX_MERGED_EXTRAS]


def table_rows(table, columns):
    """The table's data lines under spots.csv's columns: passed through unchanged when its columns
    are those, else re-written with its values in their places (empty where it has none)."""
    if table.extras == columns:
        return table.body
    where = [6 + table.extras.index(c) if c in table.extras else None for c in columns]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for line in table.body.split("\n"):
        row = _split(line)
        w.writerow(row[:6] + [row[i] if i is not None else "" for i in where])
    return buf.getvalue().rstrip("\n")


# ---------------------------------------------------------------------------------------
# the FOVs' measurements (fov_NNN.metrics.json, written by process-fov): job-written, so each
# file is size-capped and checked, and a bad one is left out with a warning; the totals are
# shown and used for estimates, never for a decision about the run

MAX_METRICS_BYTES = 4096
METRIC_LIMITS = collections.OrderedDict((
    # field: (largest plausible value for one FOV, unit, example)
    ("wall_seconds", (7 * 86400.0, "seconds", 42.5)),           # a week: no FOV job runs longer
    ("cpu_seconds", (7 * 86400.0 * 512, "seconds", 40.1)),      # a week on 512 cores
    ("peak_rss_mib", (16.0 * 2 ** 20, "MiB", 1843.2)),          # 16 TiB, the largest instance's memory
))
MAX_SLOWEST = 5
MAX_METRICS_WARNINGS = 20


def _read_capped(url, limit):
    """At most ``limit`` + 1 bytes of a file or S3 object (a hostile one is not read whole: the
    stream stops there)."""
    data = b""
    for chunk in sio.read_chunks(url, limit + 1):
        data += chunk
        if len(data) > limit:
            break
    return data[:limit + 1]


def parse_metrics(fov, data, notes=None):
    """One FOV's measurements as {field: float}; ValueError naming the field and what is right.
    The recipe's registration shift (``"recipe_facts"``, containers/README.md "Recipe facts") is
    ``registration_shift_px`` when usable; why it is not, when it is there but unusable, goes to
    ``notes`` (the timings stand without it)."""
    if len(data) > MAX_METRICS_BYTES:
        raise ValueError("it is over %d bytes; a metrics file is one small JSON object" % MAX_METRICS_BYTES)
    try:
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("it is not JSON")
    if not isinstance(obj, dict):
        raise ValueError("it is not a JSON object")
    if obj.get("fov") != fov or isinstance(obj.get("fov"), bool):
        raise ValueError('"fov" is %s, not %d' % (json.dumps(obj.get("fov"))[:40], fov))
    out = {}
    for field, (limit, unit, example) in METRIC_LIMITS.items():
        v = obj.get(field)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        try:
            ok = ok and math.isfinite(float(v)) and 0 <= float(v) <= limit
        except OverflowError:  # an integer too large for a float
            ok = False
        if not ok:
            raise ValueError('"%s" is %s; expected %s from 0 to %g, e.g. %s'
                             % (field, json.dumps(v)[:40] if v is not None or field in obj else "missing",
                                unit, limit, example))
        out[field] = float(v)
    shift, why = _registration_shift(obj)
    if shift is not None:
        out[sio.REGISTRATION_SHIFT] = shift
    elif why and notes is not None:
        notes.append(why)
    return out


def _registration_shift(obj):
    """(the FOV's registration shift in px, None) from a metrics object's "recipe_facts", or (None,
    why not) when one is there but unusable, or (None, None) when the recipe reported none."""
    facts = obj.get("recipe_facts")
    if facts is None:
        return None, None
    if not isinstance(facts, dict):
        return None, '"recipe_facts" is not a JSON object, e.g. {"%s": 1.7}' % sio.REGISTRATION_SHIFT
    if sio.REGISTRATION_SHIFT not in facts:
        return None, None
    v = facts[sio.REGISTRATION_SHIFT]
    shift = sio.fact_number(sio.REGISTRATION_SHIFT, v)
    if shift is None:
        return None, '"%s" is %s; expected %s' % (sio.REGISTRATION_SHIFT, json.dumps(v)[:40],
                                                 sio.fact_range(sio.REGISTRATION_SHIFT))
    return shift, None


def read_metrics(metrics_urls, fovs, log):
    """{fov: measurements} of the FOVs in ``fovs`` that have a usable metrics file."""
    wanted = sorted(f for f in metrics_urls if f in fovs)
    raw = _read_many([metrics_urls[f] for f in wanted], lambda u: _read_capped(u, MAX_METRICS_BYTES))
    out, warned = {}, 0
    for f in wanted:
        url = metrics_urls[f]
        notes = []
        try:
            if isinstance(raw[url], Exception):
                raise ValueError("it cannot be read: %s: %s" % (type(raw[url]).__name__, raw[url]))
            out[f] = parse_metrics(f, raw[url], notes)
        except ValueError as exc:
            warned += 1
            if warned <= MAX_METRICS_WARNINGS:
                log("warning: %s left out of summary.json's compute: %s"
                    % (sio.basename(url), " ".join(str(exc).split())[:300]))
        for note in notes:
            warned += 1
            if warned <= MAX_METRICS_WARNINGS:
                log("warning: %s: registration shift left out of fov_quality.csv: %s"
                    % (sio.basename(url), " ".join(note.split())[:300]))
    if warned > MAX_METRICS_WARNINGS:
        log("... and %d more metrics files left out" % (warned - MAX_METRICS_WARNINGS))
    return out


def _nearest_rank(sorted_values, p):
    """The p-th percentile by the nearest-rank method: a value some FOV really had."""
    k = max(1, int(math.ceil(p / 100.0 * len(sorted_values))))
    return sorted_values[k - 1]


def compute_summary(metrics):
    """summary.json's "compute" from {fov: measurements}: totals over the FOVs measured (failed
    ones included: their time was spent too), the peak memory's distribution over FOVs and the
    slowest FOVs; None when no FOV was measured."""
    if not metrics:
        return None
    rss = sorted(m["peak_rss_mib"] for m in metrics.values())
    slowest = sorted(metrics.items(), key=lambda kv: (-kv[1]["wall_seconds"], kv[0]))[:MAX_SLOWEST]
    out = collections.OrderedDict()
    out["fovs"] = len(metrics)
    out["wall_seconds"] = round(sum(m["wall_seconds"] for m in metrics.values()), 3)
    out["cpu_seconds"] = round(sum(m["cpu_seconds"] for m in metrics.values()), 3)
    out["peak_rss_mib"] = collections.OrderedDict((("p50", _nearest_rank(rss, 50)), ("p90", _nearest_rank(rss, 90)),
                                                   ("max", rss[-1])))
    out["slowest"] = [collections.OrderedDict((("fov", f), ("wall_seconds", m["wall_seconds"]))) for f, m in slowest]
    return out


# ---------------------------------------------------------------------------------------
# the tables a biologist opens in a spreadsheet: counts_matrix.csv and fov_quality.csv

MAX_MATRIX_GENES = 2000   # rows of counts_matrix.csv (genes by total); a panel has a few hundred
MAX_REASON = 200          # characters of a failure reason in fov_quality.csv
def _csv_bytes(rows):
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


def counts_matrix(merged, gene_order, log):
    """counts_matrix.csv's bytes: one row per gene (most spots first, ties by name), one column per
    merged FOV in FOV order (fov_000, ...), integer counts; capped at MAX_MATRIX_GENES rows."""
    genes = gene_order[:MAX_MATRIX_GENES]
    if len(gene_order) > len(genes):
        log("note: %d genes; counts_matrix.csv keeps the %d with the most spots (all are in summary.json)"
            % (len(gene_order), len(genes)))
    rows = [["target"] + [sio.fov_name(t.fov) for t in merged]]
    rows.extend([sio.csv_text(g, MAX_REASON)] + [t.genes.get(g, 0) for t in merged] for g in genes)
    return _csv_bytes(rows)


QUALITY_COLUMNS = ["fov", "status", "spots", "mean_quality", "wall_seconds", "peak_rss_mib",
                   sio.REGISTRATION_SHIFT, "reason"]


def _status(fov, tables, failures):
    if fov in tables:
        return "processed"
    return "no output" if failures.get(fov) == NO_TABLE else "failed"


def fov_quality(fovs, tables, failures, metrics):
    """fov_quality.csv's bytes: one row per FOV expected or found, in order; its status (processed,
    failed, no output), spots and mean quality when processed, wall_seconds and peak_rss_mib from
    its metrics file when usable, the registration shift its recipe reported there, the failure's
    reason; empty cells where unknown."""
    rows = [QUALITY_COLUMNS]
    for f in fovs:
        t, m = tables.get(f), metrics.get(f, {})
        q = t.mean_quality() if t is not None else None
        shift = m.get(sio.REGISTRATION_SHIFT)
        rows.append([f, _status(f, tables, failures), t.n if t is not None else "",
                     "%.4g" % q if q is not None else "",
                     "%g" % m["wall_seconds"] if m else "", "%g" % m["peak_rss_mib"] if m else "",
                     "%g" % shift if shift is not None else "",
                     sio.csv_text(failures[f], MAX_REASON) if f in failures else ""])
    return _csv_bytes(rows)


MAX_RECIPE_BYTES = 16 << 20


def recipe_identity(url, log):
    """summary.json's "recipe": the URL and sha256 of the recipe (STARFISH_RECIPE), so the results
    say which recipe made them; None when the launcher did not pass it (older control planes) or it
    cannot be read any more (a note on stderr: the results stand without it)."""
    url = (url or "").strip()
    if not url:
        return None
    import hashlib
    try:
        data = _read_capped(url, MAX_RECIPE_BYTES)  # a larger one is not read whole
    except Exception as exc:
        log("note: summary.json has no recipe hash: %s cannot be read: %s" % (url, type(exc).__name__))
        return None
    if len(data) > MAX_RECIPE_BYTES:
        log("note: summary.json has no recipe hash: %s is over %d bytes" % (url, MAX_RECIPE_BYTES))
        return None
    out = collections.OrderedDict((("url", url), ("sha256", hashlib.sha256(data).hexdigest())))
    try:
        parameters = recipe_parameters(data, url, log)
    except Exception as exc:  # the recipe's settings are shown, never needed: the results merge without them
        log("note: summary.json has no recipe parameters: %s: %s" % (url, type(exc).__name__))
        parameters = None
    if parameters is not None:
        out["parameters"] = parameters
    return out


# ---------------------------------------------------------------------------------------
# the recipe's parameters (containers/README.md, "Recipe parameters")
#
# Read from the recipe's text, never by running it: the recipe is arbitrary code, and the merge has
# no business executing it. The text is the one STARFISH_RECIPE names, the bytes the FOV jobs ran
# and the sha256 above covers, so the parameters cannot disagree with what ran, nor between FOVs
# (which job-reported copies could), and they are there even when every FOV failed. The price: only
# a literal is understood, a dict of JSON scalars whose values may name module-level constants.

PARAMETERS_NAME = "PARAMETERS"
PARAMETERS_EXAMPLE = 'PARAMETERS = {"masking_radius_px": MASKING_RADIUS, "threshold": 0.01}'
MAX_PARAMETERS = 32
MAX_PARAMETER_KEY = 64
MAX_PARAMETER_TEXT = 200
MAX_PARAMETER_INT = 2 ** 53     # larger integers are not exact in JSON readers (JavaScript's Number)
MAX_PARAMETER_NOTES = 5
PARAMETER_KEY_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_NO_VALUE = object()


def _assigned(node):
    """([names], value node) of a module-level ``NAME = value`` / ``NAME: T = value``; else ([], None)."""
    if isinstance(node, ast.Assign):
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        return names, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return [node.target.id], node.value
    return [], None


def _scalar(node, constants, depth=0):
    """The JSON scalar a value node stands for: a literal, or the name of a module-level constant
    assigned one before PARAMETERS; _NO_VALUE otherwise (a call, a list, a name assigned elsewhere)."""
    if isinstance(node, ast.Name):
        if node.id in constants and depth < 8:
            return _scalar(constants[node.id], constants, depth + 1)
        return _NO_VALUE
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO_VALUE
    return value if value is None or isinstance(value, (str, bool, int, float)) else _NO_VALUE


def _json_scalar(value):
    """``value`` as summary.json holds it (text one line and capped, numbers finite and exact), or
    a reason why it cannot be."""
    if value is _NO_VALUE:
        return None, "is not a literal (text, a number, True/False or None) nor a constant assigned one"
    if isinstance(value, str):
        return sio.one_line_text(value, MAX_PARAMETER_TEXT), None
    if isinstance(value, bool) or value is None:
        return value, None
    if isinstance(value, int):
        if abs(value) > MAX_PARAMETER_INT:
            return None, "is an integer beyond +-2**53"
        return value, None
    if not math.isfinite(value):
        return None, "is %r, which JSON cannot hold" % value
    return value, None


# Parsing is the one step whose cost the recipe's text sets: ast.parse of a long literal takes about
# 500 bytes of memory a source byte (a 2 MB list: 1 GB, 1.6 s; 8 MB: 3.8 GB, 13 s, measured with
# Python 3.11), and Python 3.10 (the image's) has no depth guard when it turns a deeply nested
# expression into Python objects, where the interpreter may crash. So only a recipe-sized text is
# parsed, in a child process with a memory and time limit: whatever the text does to it, the merge
# goes on with the results and without the parameters.
MAX_PARAMETERS_SOURCE = 256 << 10   # bytes; a recipe is a few KB (iss_starfish.py: 5 KB)
PARAMETERS_SECONDS = 30
PARAMETERS_MEMORY = 1 << 30
PARAMETERS_CHILD = "--recipe-parameters-from-stdin"
MAX_PARAMETERS_ANSWER = 1 << 20


def recipe_parameters(data, url, log):
    """The recipe's declared parameters, {key: JSON scalar} in their order, from a module-level
    ``PARAMETERS = {...}`` in its text (the last one, as when Python runs it); None when the recipe
    declares none, its PARAMETERS is not a dict literal, or its text is over MAX_PARAMETERS_SOURCE
    bytes or could not be read within PARAMETERS_MEMORY and PARAMETERS_SECONDS (a note says so).
    Keys become one line of letters, digits, ``_ . -`` (others ``_``), at most 64 characters; at
    most 32 entries; an entry whose value is not a JSON scalar is left out with a note."""
    if len(data) > MAX_PARAMETERS_SOURCE:
        log("note: summary.json has no recipe parameters: %s is %d bytes; PARAMETERS is read from recipes of at "
            "most %d bytes (a recipe is a few KB: keep data and generated tables out of it)"
            % (url, len(data), MAX_PARAMETERS_SOURCE))
        return None
    import subprocess
    why = None
    try:
        child = subprocess.run([sys.executable, os.path.abspath(__file__), PARAMETERS_CHILD, url], input=data,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=PARAMETERS_SECONDS)
    except subprocess.TimeoutExpired:
        why = "reading it took over %g s" % PARAMETERS_SECONDS
    except OSError as exc:
        why = "no process could read it: %s" % type(exc).__name__
    else:
        if child.returncode != 0:
            why = ("reading it ended with exit code %d" % child.returncode if child.returncode > 0
                   else "reading it was killed by signal %d" % -child.returncode)
    if why is None:
        try:
            answer = json.loads(child.stdout[:MAX_PARAMETERS_ANSWER].decode("utf-8"))
            lines, parameters = answer["log"], answer["parameters"]
            assert isinstance(lines, list) and (parameters is None or isinstance(parameters, dict))
        except Exception:  # our own child's answer; a bug there costs the parameters, never the merge
            why = "its answer could not be read"
    if why is not None:
        log("note: summary.json has no recipe parameters: %s: %s (within %d MiB)"
            % (url, why, PARAMETERS_MEMORY >> 20))
        return None
    for line in lines[:MAX_PARAMETER_NOTES + 1]:
        log(sio.one_line_text(line, 400))
    return None if parameters is None else collections.OrderedDict(parameters)


def _parameters_child(url):
    """In the child process: what recipe_parameters returns and logs, as JSON on stdout."""
    import resource
    for limit, value in ((resource.RLIMIT_AS, PARAMETERS_MEMORY), (resource.RLIMIT_CPU, PARAMETERS_SECONDS)):
        try:
            resource.setrlimit(limit, (value, resource.getrlimit(limit)[1]))
        except (ValueError, OSError):  # a lower hard limit already: that one holds
            pass
    data = sys.stdin.buffer.read(MAX_PARAMETERS_SOURCE + 1)
    lines = []
    parameters = read_parameters(data, url, lines.append)
    sys.stdout.write(json.dumps({"parameters": parameters, "log": lines}))
    return 0


def read_parameters(data, url, log):
    """recipe_parameters' reading, in this process: for a text whose size is already checked."""
    try:
        # utf-8-sig: a recipe saved with a byte order mark (Windows editors) is what Python runs too
        tree = ast.parse(data.decode("utf-8-sig"))
    except (SyntaxError, ValueError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
        log("note: summary.json has no recipe parameters: %s cannot be parsed (%s)" % (url, type(exc).__name__))
        return None
    constants, declared = {}, None
    for node in tree.body:
        names, value = _assigned(node)
        for name in names:
            if name == PARAMETERS_NAME:
                declared = (value, dict(constants))  # its names mean what they meant at that line
            else:
                constants[name] = value
    if declared is None:
        return None
    value, constants = declared
    if not isinstance(value, ast.Dict):
        log("note: summary.json has no recipe parameters: %s in %s is not a dict literal; write it as %s"
            % (PARAMETERS_NAME, url, PARAMETERS_EXAMPLE))
        return None
    out, notes = collections.OrderedDict(), []
    for key_node, value_node in zip(value.keys, value.values):
        key = _scalar(key_node, constants) if key_node is not None else _NO_VALUE
        if not isinstance(key, str):
            shown = ("**" if key_node is None else repr(key)[:60] if key is not _NO_VALUE
                     else "a %s" % type(key_node).__name__)
            notes.append("a key that is not text (%s)" % sio.one_line_text(shown, 60))
            continue
        clean = PARAMETER_KEY_BAD.sub("_", sio.one_line_text(key, MAX_PARAMETER_KEY * 4))[:MAX_PARAMETER_KEY]
        if not clean or clean in out:
            notes.append("%r (empty or given twice)" % clean)
            continue
        scalar, why = _json_scalar(_scalar(value_node, constants))
        if why:
            notes.append("%r %s" % (clean, why))
            continue
        if len(out) == MAX_PARAMETERS:
            notes.append("%r and the entries after it (at most %d)" % (clean, MAX_PARAMETERS))
            break
        out[clean] = scalar
    for note in notes[:MAX_PARAMETER_NOTES]:
        log("note: %s of %s left out of summary.json: %s" % (PARAMETERS_NAME, url, note))
    if len(notes) > MAX_PARAMETER_NOTES:
        log("note: ... and %d more %s entries left out" % (len(notes) - MAX_PARAMETER_NOTES, PARAMETERS_NAME))
    return out


# ---------------------------------------------------------------------------------------
# plotting

def plot(panels, tables, gene_order, reasons, title_extra):
    """spots.png's bytes: one panel per FOV of ``panels`` (at most PANEL_FOVS), coloured by gene."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    n = len(panels)
    cols = max(1, min(8, int(round(n ** 0.5 + 0.49))))
    rows = (n + cols - 1) // cols
    top = gene_order[:MAX_LEGEND_GENES]
    cmap = plt.get_cmap("tab20")
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))  # 10 distinct hues first
    colours = {g: cmap(order[i % 20]) for i, g in enumerate(top)}
    other = (0.6, 0.6, 0.6, 1.0)

    fig_w = 2.2 * cols + 2.6
    fig_h = 2.2 * rows + 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(fig_w, fig_h), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        fov = panels[k]
        t = tables.get(fov)
        if t is None:
            ax.set_facecolor((1.0, 0.93, 0.93))
            ax.text(0.5, 0.5, "missing", ha="center", va="center", color="firebrick",
                    transform=ax.transAxes, fontsize=9)
            ax.set_title("FOV %d" % fov, fontsize=8, color="firebrick")
            continue
        pts = t.sample or []
        if pts:
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            cs = [colours.get(p[2], other) for p in pts]
            size = 12 if len(pts) <= 200 else (5 if len(pts) <= 1000 else 2)
            ax.scatter(xs, ys, c=cs, s=size, linewidths=0)
            ax.invert_yaxis()  # image coordinates: y grows downwards
        else:
            ax.text(0.5, 0.5, "0 spots", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title("FOV %d: %d spots%s" % (fov, t.n, " (xc, yc)" if t.physical else ""), fontsize=8)
    handles = [Line2D([0], [0], marker="o", linestyle="", markersize=5, color=colours[g], label=g)
               for g in top]
    if len(gene_order) > len(top):
        handles.append(Line2D([0], [0], marker="o", linestyle="", markersize=5, color=other,
                              label="other (%d genes)" % (len(gene_order) - len(top))))
    if handles:
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False, title="gene")
    fig.suptitle(title_extra, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1.0 - 2.4 / fig_w, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


OVERVIEW_POINTS = 100000   # spots drawn in overview.png over all FOVs (evenly sampled in each)
OVERVIEW_MIN_PER_FOV = 20
OVERVIEW_GENES = 10        # coloured (tab10 without its grey, and black); the others grey
LABELLED_FOVS = 64         # FOV numbers written on the overview up to this many FOVs
UNIT = "\u00b5m"           # SpaceTx field_of_view_0.1.0 tiles/coordinates.json: "measured in micrometers"


def nice_length(span):
    """A scale bar's length: 1, 2 or 5 times a power of ten, about a fifth of ``span``."""
    target = span / 5.0
    power = 10 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target)


def _grid_offsets(tables):
    """Where each FOV goes when none has a stage position: a square grid of cells as large as the
    largest FOV's pixel extent (with a gap), in FOV order."""
    size = max([max(p[0] for p in t.overview) for t in tables if t.overview] +
               [max(p[1] for p in t.overview) for t in tables if t.overview] + [1.0]) * 1.1
    cols = max(1, int(math.ceil(len(tables) ** 0.5)))
    return {t.fov: ((i % cols) * size, (i // cols) * size) for i, t in enumerate(tables)}


def overview_notes(n_merged, n_placed, n_all):
    """What overview.png's title adds: FOVs not at their stage position, and missing FOVs."""
    notes = []
    if n_merged and not n_placed:
        notes.append("no FOV has physical coordinates (xc, yc): FOVs on a grid in pixel coordinates, "
                     "not at their stage positions")
    elif n_placed < n_merged:
        notes.append("%d FOVs without physical coordinates (xc, yc) not shown" % (n_merged - n_placed))
    if n_all > n_merged:
        notes.append("%d of %d FOVs missing" % (n_all - n_merged, n_all))
    return notes


def _overview_size(xs, ys):
    """The figure's inches: 10 wide plus the legend, as tall as the experiment's shape asks
    (a strip of FOVs gets a short picture, not a tall empty one), 4 to 12 inches."""
    w = (max(xs) - min(xs)) if xs else 1.0
    h = (max(ys) - min(ys)) if ys else 1.0
    return 11.5, min(12.0, max(4.0, 8.5 * h / max(w, 1e-12) + 1.5))


def _overview_points(placed, offsets, colours):
    """The spots to draw, each FOV moved by its offset: the top genes' (x, y, colour) lists, and the others' (xs, ys)."""
    xs, ys, cs, grey_xy = [], [], [], ([], [])
    for t in placed:
        dx, dy = offsets[t.fov]
        for x, y, g in t.overview:
            c = colours.get(g)
            if c is None:
                grey_xy[0].append(x + dx)
                grey_xy[1].append(y + dy)
            else:
                xs.append(x + dx)
                ys.append(y + dy)
                cs.append(c)
    return xs, ys, cs, grey_xy


def _overview_axes(ax, physical):
    """Micrometre axes with a scale bar; no ticks for the pixel-grid fallback, whose numbers mean nothing."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
    if not physical:
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.set_xlabel("x (%s)" % UNIT)
    ax.set_ylabel("y (%s)" % UNIT)
    x0, x1 = ax.get_xlim()
    if x1 > x0:
        length = nice_length(x1 - x0)
        ax.add_artist(AnchoredSizeBar(ax.transData, length, "%g %s" % (length, UNIT), "lower right",
                                      pad=0.6, frameon=True, size_vertical=(x1 - x0) / 300.0))


def _overview_legend(ax, top, colours, n_other, grey):
    """One entry a top gene, and one for the rest (grey), outside the axes."""
    from matplotlib.lines import Line2D
    handles = [Line2D([0], [0], marker="o", linestyle="", markersize=6, color=colours[g], label=g) for g in top]
    if n_other > 0:
        handles.append(Line2D([0], [0], marker="o", linestyle="", markersize=6, color=grey,
                              label="other (%d genes)" % n_other))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False,
                  title="gene")


def plot_overview(merged, gene_order, n_all, title):
    """overview.png's bytes: every FOV's spots at starfish's physical xc, yc, so each FOV sits at
    its stage position, coloured by the OVERVIEW_GENES most frequent genes (the others grey), with
    a scale bar in micrometres. When no FOV has physical coordinates the FOVs are laid out on a
    grid in pixel coordinates instead, and the picture says so."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    placed = [t for t in merged if t.overview and t.overview_physical]
    physical = bool(placed)
    if not physical:
        placed = [t for t in merged if t.overview]
    offsets = {t.fov: (0.0, 0.0) for t in placed} if physical else _grid_offsets(placed)
    top = gene_order[:OVERVIEW_GENES]
    cmap = plt.get_cmap("tab10")
    palette = [cmap(i) for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)] + [(0.0, 0.0, 0.0, 1.0)]  # tab10's grey is "other"'s
    colours = {g: palette[i] for i, g in enumerate(top)}
    grey = (0.72, 0.72, 0.72, 1.0)

    xs, ys, cs, grey_xy = _overview_points(placed, offsets, colours)
    n_points = len(xs) + len(grey_xy[0])
    fig, ax = plt.subplots(figsize=_overview_size(xs + grey_xy[0], ys + grey_xy[1]))
    size = 10 if n_points <= 2000 else (3 if n_points <= 20000 else 1)
    if grey_xy[0]:  # under the coloured genes
        ax.scatter(grey_xy[0], grey_xy[1], color=grey, s=size, linewidths=0)
    if xs:
        ax.scatter(xs, ys, c=cs, s=size, linewidths=0)
    if len(placed) <= LABELLED_FOVS:
        for t in placed:  # the FOV's number at the top left of its spots, so it hides none
            dx, dy = offsets[t.fov]
            ax.text(dx + min(p[0] for p in t.overview), dy + min(p[1] for p in t.overview), str(t.fov),
                    ha="left", va="bottom", fontsize=8, weight="bold",
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", alpha=0.7, linewidth=0))
    ax.set_aspect("equal", adjustable="datalim")
    ax.invert_yaxis()  # y grows downwards, as in the images
    _overview_axes(ax, physical)
    notes = overview_notes(len(merged), len(placed) if physical else 0, n_all)
    _overview_legend(ax, top, colours, len(gene_order) - len(top), grey)
    ax.set_title(title + ("\n" + "; ".join(notes) if notes else ""), fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def write_result(results, name, data, content_type, run_id):
    """Writes one result file whole (starfish_io: temporary name, then rename); a Failure (exit 1)
    saying which file, why and what to do when the disk refuses it."""
    url = sio.join(results, name)
    try:
        sio.write_bytes(url, data, content_type=content_type)
    except OSError as exc:  # a full disk (ENOSPC), no permission (EACCES), a failing disk (EIO)
        raise Failure(sio.write_failure(url, exc, run_id), 1)


def remove_stale(results, name, log):
    """Removes a result that an earlier merge into the same folder wrote and this one does not
    (spots.png of a small FOV list, when STARFISH_FOVS was changed by hand); a note when it cannot."""
    url = sio.join(results, name)
    try:
        sio.remove(url)
    except Exception as exc:  # the results stand; the note says which file is not this merge's
        log("note: %s is an earlier merge's and could not be removed: %s: %s"
            % (url, type(exc).__name__, " ".join(str(exc).split())[:200]))


def clear_summary(results, run_id):
    """Removes an earlier merge's summary.json, the file that says a merge finished."""
    url = sio.join(results, "summary.json")
    try:
        sio.remove(url)
    except OSError as exc:
        raise Failure("could not remove the earlier %s: %s; check the disk that holds %s and run "
                      "/starfish retry %s" % (url, sio.describe_os_error(exc), results,
                                               run_id or "<run id>"), 1)


# ---------------------------------------------------------------------------------------

def _classify(fovs_dir, names):
    """The FOV folder's files by kind: {fov: url} of spot tables, error records and metrics."""
    table_urls, error_urls, metrics_urls = {}, {}, {}
    for name in names:
        for regex, urls in ((TABLE_RE, table_urls), (ERROR_RE, error_urls), (METRICS_RE, metrics_urls)):
            m = regex.match(name)
            if m:
                urls[int(m.group(1))] = sio.join(fovs_dir, name)
                break
    return table_urls, error_urls, metrics_urls


def _panel_fovs(expected_set, all_fovs):
    """The FOVs drawn in spots.png: none past PANEL_FOVS expected.

    Whether there is a spots.png is the FOV list's to say (STARFISH_FOVS, which the control plane
    also reads, src/run/results.ts), not the tables': a job that wrote tables of other FOVs into a
    small run's folder must not take away a result that run is required to have. Their panels are
    drawn when they fit.
    """
    if len(expected_set) > PANEL_FOVS:
        return []
    if len(all_fovs) <= PANEL_FOVS:
        return all_fovs
    return sorted(expected_set)


def _read_tables(found, table_urls, panel_set, per_fov_points):
    """The parsed tables by FOV, and the reason of each that could not be read or parsed."""
    texts = _read_many([table_urls[f] for f in found], sio.read_text)
    tables, failures = {}, {}
    for f in found:
        v = texts[table_urls[f]]
        if isinstance(v, Exception):
            failures[f] = "unreadable output table: %s: %s" % (type(v).__name__, v)
            continue
        try:
            tables[f] = parse_table(f, v, f in panel_set, per_fov_points)
        except ValueError as exc:
            failures[f] = "malformed output table %s: %s" % (sio.basename(table_urls[f]), exc)
    return tables, failures


def _missing_reasons(expected_set, tables, failures, error_urls):
    """The missing FOVs, sorted; ``failures`` gains a reason for each (its error record, else NO_TABLE)."""
    missing = sorted(set(f for f in expected_set if f not in tables) | set(failures))
    need_reasons = [f for f in missing if f not in failures and f in error_urls]
    err_texts = _read_many([error_urls[f] for f in need_reasons], _read_error_record)
    for f in missing:
        if f in failures:
            continue
        if f in error_urls:
            v = err_texts.get(error_urls[f])
            failures[f] = _error_reason(v) if isinstance(v, str) else "failed (error record unreadable)"
        else:
            failures[f] = NO_TABLE
    return missing


def _summary(expected_set, merged, missing, failures, genes, gene_order, metrics, recipe_id):
    """summary.json's content, in its documented order."""
    summary = collections.OrderedDict()
    summary["fovs_expected"] = len(expected_set)
    summary["fovs_processed"] = len(merged)
    summary["fovs_missing"] = missing
    summary["failures"] = collections.OrderedDict((str(f), failures[f]) for f in sorted(failures))
    summary["spots_total"] = sum(t.n for t in merged)
    summary["spots_per_fov"] = collections.OrderedDict((str(t.fov), t.n) for t in merged)
    summary["counts_per_gene"] = collections.OrderedDict((g, genes[g]) for g in gene_order)
    compute = compute_summary(metrics)
    if compute is not None:  # runs whose jobs wrote no measurements (older images) have none
        summary["compute"] = compute
    if recipe_id is not None:  # the launcher passes STARFISH_RECIPE to the merge (newer control planes)
        summary["recipe"] = recipe_id
    return summary


def _drawn(what, draw):
    """A picture the run promises: drawing it failed means the merge failed."""
    try:
        return draw()
    except Exception as exc:
        traceback.print_exc()
        raise Failure("could not draw %s: %s: %s" % (what, type(exc).__name__, " ".join(str(exc).split())), 1)


def _panels_title(run_id, results, summary, n_genes, merged, n_all, panel_fovs):
    title = "%s: %d spots, %d genes, %d/%d FOVs" % (
        run_id or results, summary["spots_total"], n_genes, len(merged), summary["fovs_expected"])
    if any(t.sample is not None and t.n > len(t.sample) for t in merged):
        title += "; up to %d spots per panel plotted" % POINTS_PER_PANEL
    if n_all > len(panel_fovs):
        title += "; the %d FOVs outside STARFISH_FOVS are not drawn" % (n_all - len(panel_fovs))
    return title


def merge(fovs_dir, results, expected, run_id=None, log=None, recipe=None):
    """Merge the tables under ``fovs_dir`` into ``results``; returns (summary dict, exit code).

    ``expected``: the FOVs the run expects (an iterable of indices, e.g. sio.FovRanges);
    ``recipe``: the recipe's URL (STARFISH_RECIPE) when known, for its hash in summary.json.
    """
    log = log or (lambda msg: print(PREFIX + msg, file=sys.stderr))
    t0 = time.time()
    expected_set = set(expected)
    table_urls, error_urls, metrics_urls = _classify(fovs_dir, sio.list_prefix(fovs_dir))

    found = sorted(table_urls)
    unexpected = [f for f in found if f not in expected_set]
    if unexpected:
        log("note: %d FOV table(s) not in STARFISH_FOVS were merged too: %s"
            % (len(unexpected), sio.format_fov_ranges(unexpected)))
    all_fovs = sorted(expected_set | set(found))
    panel_fovs = _panel_fovs(expected_set, all_fovs)
    per_fov_points = max(OVERVIEW_MIN_PER_FOV, OVERVIEW_POINTS // max(1, len(all_fovs)))
    tables, failures = _read_tables(found, table_urls, set(panel_fovs), per_fov_points)
    missing = _missing_reasons(expected_set, tables, failures, error_urls)

    merged = [tables[f] for f in sorted(tables)]
    genes = collections.Counter()
    for t in merged:
        genes.update(t.genes)
    gene_order = [g for g, _ in sorted(genes.items(), key=lambda kv: (-kv[1], kv[0]))]
    metrics = read_metrics(metrics_urls, expected_set | set(found), log)
    summary = _summary(expected_set, merged, missing, failures, genes, gene_order, metrics, recipe_identity(recipe, log))

    # summary.json goes last and only when every other file is written: it says the merge finished.
    clear_summary(results, run_id)
    summary_bytes = (json.dumps(summary, indent=2) + "\n").encode("utf-8")
    # spots.csv: the six leading columns and the union of the others, every table's rows in FOV order
    columns = merged_columns(merged, log)
    parts = [",".join(LEADING + columns)]
    parts.extend(table_rows(t, columns) for t in merged if t.n)
    write_result(results, "spots.csv", ("\n".join(parts) + "\n").encode("utf-8"), "text/csv", run_id)
    quality = fov_quality(all_fovs, tables, failures, metrics)

    for i, f in enumerate(missing):
        if i == MAX_MISSING_LINES:
            log("... and %d more missing FOVs (see summary.json)" % (len(missing) - i))
            break
        log("FOV %d missing: %s" % (f, failures[f]))

    if not merged:
        # nothing to count or draw; the quality table and the summary still say why each FOV is missing
        write_result(results, "fov_quality.csv", quality, "text/csv", run_id)
        write_result(results, "summary.json", summary_bytes, "application/json", run_id)
        raise Failure("no FOV tables found under %s" % fovs_dir, 1)

    n_all = len(all_fovs)
    if panel_fovs:
        title = _panels_title(run_id, results, summary, len(genes), merged, n_all, panel_fovs)
        # spots.png is one of a small run's results: without it the run did not succeed
        png = _drawn("spots.png", lambda: plot(panel_fovs, tables, gene_order, failures, title))
        write_result(results, "spots.png", png, "image/png", run_id)
    else:
        remove_stale(results, "spots.png", log)
    write_result(results, "counts_matrix.csv", counts_matrix(merged, gene_order, log), "text/csv", run_id)
    write_result(results, "fov_quality.csv", quality, "text/csv", run_id)
    overview_title = "%s: %d spots, %d genes, %d of %d FOVs" % (
        run_id or results, summary["spots_total"], len(genes), len(merged), n_all)
    png = _drawn("overview.png", lambda: plot_overview(merged, gene_order, n_all, overview_title))
    write_result(results, "overview.png", png, "image/png", run_id)
    write_result(results, "summary.json", summary_bytes, "application/json", run_id)

    print("merge-results: %smerged %d/%d FOVs, %d spots, %d genes, %d missing -> %s (%.1f s)"
          % ("run %s: " % run_id if run_id else "", len(merged), len(expected_set), summary["spots_total"],
             len(genes), len(missing), results, time.time() - t0))
    return summary, 0


def main(environ=None):
    environ = os.environ if environ is None else environ
    try:
        job = parse_env(environ)
        _, code = merge(job.fov_output, job.results_output, job.expected, run_id=job.run_id,
                        recipe=environ.get("STARFISH_RECIPE"))
        return code
    except Failure as f:
        sys.stdout.flush()
        print(PREFIX + f.reason, file=sys.stderr)
        return f.code
    except Exception as exc:
        traceback.print_exc()
        sys.stdout.flush()
        print(PREFIX + "%s: %s" % (type(exc).__name__, " ".join(str(exc).split())), file=sys.stderr)
        return 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == PARAMETERS_CHILD:
        sys.exit(_parameters_child(sys.argv[2]))
    sys.exit(main())
