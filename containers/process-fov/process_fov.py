#!/usr/bin/env python3
"""process-fov: run a starfish recipe on a chunk of fields of view and write their spot tables.

Entry point of the process-fov image (one AWS Batch array child per chunk of FOVs), also run
directly by the local runner.  The contract is in containers/README.md; in short:

  STARFISH_RUN_ID       the run id, e.g. 261125-k3f9 (for the log lines)
  STARFISH_EXPERIMENT   URL/path of a SpaceTx experiment.json
  STARFISH_RECIPE       URL/path of a .py defining process_fov(fov_index: int, experiment_url: str)
                        (starfish's WDL workflow) or process_fov(fov: FieldOfView, codebook: Codebook)
                        (starfish's AWS tutorial); the signature says which
  STARFISH_FOVS_AT      URL/path of the launcher's {"fovs": "<range text>", "perChild": K}: array
                        child i (AWS_BATCH_JOB_ARRAY_INDEX, default 0 for a plain job) processes the
                        FOVs at positions i*K .. min((i+1)*K, n)-1 of that list in ascending order
  STARFISH_FOVS         instead of STARFISH_FOVS_AT, for a job started by hand: range text, e.g.
                        0-9999 or 1-3,7,9-12; child i processes the i-th FOV of the list
  STARFISH_FOV_OUTPUT   URL/path where the FOVs' files go (s3://bucket/outputs/<run>/fovs)

Everything the experiment refers to is checked against the URL policy first
(starfish_io.resolve_reference: https at public addresses only, no http://, and file:// or
absolute paths only when the experiment itself is local); a remote experiment's checks and
recipe read no local file through starfish_io.

The recipe is loaded once per child; then each FOV of the chunk in turn writes
<fov output>/fov_NNN.csv (fov,x,y,z,target,quality, then starfish's physical xc,yc,zc and every
other column the recipe returned), whole or not at all (a temporary name, then a rename), or on
failure fov_NNN.error.json with the reason, and in both cases fov_NNN.metrics.json (wall time,
CPU time, peak memory, and the facts the recipe reported through starfish_io.report_fov_facts,
checked: its registration shift). An empty result is a header-only table (a FOV without spots is a
success). A failing FOV does not stop the others. The last line on stderr is
"process-fov: <reason>" when anything failed; the exit code is 0 when every FOV succeeded, 1
when one failed (recipe/data, or its table could not be written: a full disk says so, with the
next step), 2 on a bad environment/configuration (before any FOV runs, or a FOV the experiment
does not have).
"""
import csv
import gc
import inspect
import io
import json
import math
import numbers
import os
import re
import sys
import time
import traceback
import types

_HERE = os.path.dirname(os.path.abspath(__file__))
for _cand in (os.path.join(_HERE, "..", "common"), os.path.join(_HERE, "common"), _HERE):
    if os.path.exists(os.path.join(_cand, "starfish_io.py")):
        sys.path.insert(0, os.path.abspath(_cand))
        break

import starfish_io as sio  # noqa: E402
import spacetx  # noqa: E402

PREFIX = "process-fov: "
HEADER = ["fov", "x", "y", "z", "target", "quality"]
EXIT_FAILURE = 1
EXIT_BAD_ENV = 2
MAX_REASON = 600
TILE_EXTENSIONS = (".tif", ".tiff", ".png", ".npy", ".jpg", ".jpeg", ".zarr")


class Failure(Exception):
    """A failure with a readable one-line reason and an exit code."""

    def __init__(self, reason, code=EXIT_FAILURE, show_traceback=False):
        Exception.__init__(self, reason)
        self.reason = reason
        self.code = code
        self.show_traceback = show_traceback


def one_line(text, limit=MAX_REASON):
    """A reason as one line without control characters (a recipe's message may hold terminal
    escapes or NULs), at most ``limit`` characters."""
    return sio.one_line_text(text, limit)


# ---------------------------------------------------------------------------------------
# environment

def _array_index(environ):
    """AWS_BATCH_JOB_ARRAY_INDEX: absent for a plain (non-array) job, which is child 0."""
    raw = sio.env_value(environ, "AWS_BATCH_JOB_ARRAY_INDEX")
    if raw is None:
        return 0
    if not all(c in "0123456789" for c in raw):
        raise Failure("AWS_BATCH_JOB_ARRAY_INDEX must be a non-negative integer, got %r" % raw, EXIT_BAD_ENV)
    return int(raw)


def resolve_chunk(environ):
    """The FOVs this child processes, in order: with the list of STARFISH_FOVS (or of the object at
    STARFISH_FOVS_AT) and its "perChild" K, child i (AWS_BATCH_JOB_ARRAY_INDEX) takes the FOVs
    at positions i*K .. min((i+1)*K, n)-1 of the list in ascending order (K = 1 for STARFISH_FOVS)."""
    fovs, per_child = sio.require_fov_plan_env(environ, "STARFISH_FOVS")
    return chunk_of(fovs, per_child, _array_index(environ))


def chunk_of(fovs, per_child, index):
    """Child ``index``'s FOVs of ``fovs`` (a FovRanges) at ``per_child`` FOVs per child; a Failure
    (exit 2) when the array has fewer children than that."""
    n = len(fovs)
    start = index * per_child
    if start >= n:
        packed = "" if per_child == 1 else ", %d per child: children 0-%d" % (per_child, (n - 1) // per_child)
        raise Failure("AWS_BATCH_JOB_ARRAY_INDEX=%d is beyond STARFISH_FOVS=%s (%d FOV%s%s)"
                      % (index, one_line(str(fovs), 80), n, "" if n == 1 else "s", packed), EXIT_BAD_ENV)
    return [fovs[i] for i in range(start, min(start + per_child, n))]


# ---------------------------------------------------------------------------------------
# experiment checks (cheap, before running the recipe)

def is_local_experiment(experiment_url):
    """Local mode: the experiment is a path or file:// URL, so it may name local files."""
    return sio.local_path(experiment_url) is not None


def check_experiment(experiment_url, fov):
    """The FOV's source as starfish would load it (containers/common/spacetx.py): its name in
    the experiment and its tiles, every reference under the URL policy, and every tile that
    declares a sha256 matching it; Failure (exit 2 for a bad request, 1 otherwise) before any
    compute."""
    try:
        source = spacetx.check_fov(experiment_url, fov)
        spacetx.verify_tiles(source)
    except spacetx.FormatError as exc:
        raise Failure(exc.message, exc.code)
    return source


# ---------------------------------------------------------------------------------------
# recipe loading and running

# The two ways starfish users write a recipe (containers/README.md, "Recipe conventions"):
INDEX_CONVENTION = "index"  # process_fov(fov_index: int, experiment_url: str): starfish's WDL workflow
FOV_CONVENTION = "fov"      # process_fov(fov: FieldOfView, codebook: Codebook): starfish's AWS tutorial
SIGNATURES = ("process_fov(fov_index: int, experiment_url: str) (starfish's WDL workflow, starfish-analysis) "
              "or process_fov(fov: FieldOfView, codebook: Codebook) (starfish's AWS tutorial)")
# Parameter names that say which convention a recipe without annotations follows. A first
# parameter called just "fov" says nothing (WDL-style recipes call the index that too).
_INDEX_NAMES = (frozenset(("fov_index", "field_num", "fov_num", "fov_number", "fov_idx", "field_index",
                           "field_of_view_index", "fov_id", "index", "idx", "i", "n")),
                frozenset(("experiment_url", "experiment_str", "experiment", "experiment_json",
                           "experiment_path", "experiment_uri", "exp_url", "json_url", "url")))
_FOV_NAMES = (frozenset(("field_of_view",)), frozenset(("codebook", "code_book", "cb")))
_INDEX_TYPES, _FOV_TYPES = (("int",), ("str",)), (("FieldOfView",), ("Codebook",))


def load_recipe(recipe_url):
    try:
        source = sio.read_text(recipe_url)
    except FileNotFoundError:
        raise Failure("recipe not found: %s" % recipe_url, EXIT_BAD_ENV)
    module = types.ModuleType("recipe")
    module.__dict__["__builtins__"] = __builtins__
    lp = sio.local_path(recipe_url)
    module.__file__ = os.path.abspath(lp) if lp else recipe_url
    if lp:
        sys.path.insert(0, os.path.dirname(os.path.abspath(lp)))
    sys.modules["recipe"] = module
    try:
        code = compile(source, module.__file__, "exec")
        exec(code, module.__dict__)
    except SyntaxError as exc:
        raise Failure("recipe %s has a syntax error at line %s: %s"
                      % (recipe_url, exc.lineno, exc.msg), EXIT_BAD_ENV, show_traceback=True)
    except (Exception, SystemExit) as exc:  # sys.exit(0) at import would end the job as a success
        raise Failure("recipe %s failed to load: %s: %s"
                      % (recipe_url, type(exc).__name__, one_line(exc, 300)), EXIT_BAD_ENV,
                      show_traceback=True)
    fn = getattr(module, "process_fov", None)
    if not callable(fn):
        raise Failure("recipe %s does not define process_fov; write it as %s" % (recipe_url, SIGNATURES),
                      EXIT_BAD_ENV)
    return fn


def _type_name(annotation):
    """'int', 'FieldOfView', ... for an annotation object or string (PEP 563); None when absent."""
    if annotation is inspect.Parameter.empty:
        return None
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return str(name).strip("'\" ").rsplit(".", 1)[-1]


def _votes(params, pairs):
    """The conventions the two parameters point to: pairs = ((convention, (first, second)), ...)
    where first/second are collections of type or parameter names."""
    found = set()
    for convention, (first, second) in pairs:
        if params[0] in first or params[1] in second:
            found.add(convention)
    return found


def recipe_convention(fn, recipe_url):
    """How to call the recipe's process_fov: INDEX_CONVENTION or FOV_CONVENTION, decided by its
    parameters' annotations, else their names; a Failure (exit 2) with both examples when the
    signature says neither, or both."""
    def refuse(why, shown=""):
        return Failure("recipe %s: cannot tell how to call process_fov%s: %s; write it as %s"
                       % (recipe_url, shown, why, SIGNATURES), EXIT_BAD_ENV)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise refuse("its signature cannot be read")
    shown = one_line(str(signature), 120)
    positional = [p for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    extra = [p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if len(positional) < 2 or len(required) > 2 or extra:
        raise refuse("it must take exactly two arguments", shown)
    first, second = positional[0], positional[1]
    by_type = _votes((_type_name(first.annotation), _type_name(second.annotation)),
                     ((INDEX_CONVENTION, _INDEX_TYPES), (FOV_CONVENTION, _FOV_TYPES)))
    by_name = _votes((first.name.lower(), second.name.lower()),
                     ((INDEX_CONVENTION, _INDEX_NAMES), (FOV_CONVENTION, _FOV_NAMES)))
    for votes, what in ((by_type, "annotations"), (by_name, "parameter names")):
        if len(votes) == 2:
            raise refuse("its %s mix both conventions" % what, shown)
        if votes:  # annotations, when they say anything, decide over names
            return votes.pop()
    raise refuse("neither its annotations nor its parameter names say which arguments it takes", shown)


def _starfish_experiment(experiment_url, fov, cache):
    """starfish's Experiment for ``experiment_url``, loaded once per child (``cache``, a dict): a
    packed child's FOVs share it, as the tutorial's workflow shares it across its FOVs."""
    if experiment_url in cache:
        return cache[experiment_url]
    try:
        import starfish
    except ImportError as exc:
        raise Failure("the recipe is written as process_fov(fov: FieldOfView, codebook: Codebook), which needs "
                      "starfish to load the experiment, and starfish cannot be imported here (%s: %s); run it "
                      "in the process-fov image, or write it as process_fov(fov_index: int, experiment_url: str)"
                      % (type(exc).__name__, one_line(exc, 200)), EXIT_BAD_ENV)
    try:
        cache[experiment_url] = starfish.Experiment.from_json(experiment_url)
    except Exception as exc:
        raise Failure(describe_recipe_error(fov, exc, "starfish's Experiment.from_json(%s)" % experiment_url),
                      EXIT_FAILURE, show_traceback=True)
    return cache[experiment_url]


def _starfish_fov(experiment_url, fov, fov_name, cache):
    """(FieldOfView, Codebook) for the tutorial convention, read by starfish itself, so the recipe
    gets exactly what Experiment.from_json gives (the same objects the tutorial's workflow passes)."""
    experiment = _starfish_experiment(experiment_url, fov, cache)
    try:
        field_of_view = experiment[fov_name]
    except LookupError:  # starfish raises IndexError for a name it does not list
        names = sorted(str(k) for k in experiment.keys()) if hasattr(experiment, "keys") else []
        desc = "%d FOVs: %s..%s" % (len(names), names[0], names[-1]) if names else "no FOVs"
        raise Failure("FOV %d (%s) is not in the experiment as starfish reads it (%s)"
                      % (fov, fov_name, one_line(desc, 200)), EXIT_BAD_ENV)
    return field_of_view, experiment.codebook


def recipe_arguments(convention, experiment_url, fov, fov_name, cache=None):
    """The two arguments process_fov takes under ``convention`` (``cache``: the child's loaded
    starfish Experiment, shared by the FOVs of its chunk)."""
    if convention == FOV_CONVENTION:
        return _starfish_fov(experiment_url, fov, fov_name, {} if cache is None else cache)
    return fov, experiment_url


def _find_not_found(exc):
    """Walk the exception chain for a FileNotFoundError; return its filename (or None)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, FileNotFoundError):
            return exc.filename or (exc.args[0] if exc.args else None) or "?"
        exc = exc.__cause__ or exc.__context__
    return None


def _find_refusal(exc):
    """The first UrlRefused in the exception chain (a reference the URL policy refused)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sio.UrlRefused):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def describe_recipe_error(fov, exc, who="recipe"):
    if isinstance(exc, SystemExit):
        return ("FOV %d: %s called sys.exit(%s) instead of returning its spots; return them, e.g. `return decoded`"
                % (fov, who, "" if exc.code is None else one_line(repr(exc.code), 100)))
    if isinstance(exc, spacetx.FormatError):  # a recipe reading the experiment with the shared reader
        return "FOV %d: %s" % (fov, one_line(re.sub(r"^FOV \d+: ", "", exc.message), 400))
    refused = _find_refusal(exc)
    if refused is not None:
        return "FOV %d: %s" % (fov, one_line(refused, 400))
    missing = _find_not_found(exc)
    if missing is not None:
        kind = "tile" if str(missing).lower().endswith(TILE_EXTENSIONS) else "file"
        return "FOV %d: %s not found: %s" % (fov, kind, missing)
    if isinstance(exc, MemoryError):
        return "FOV %d: %s ran out of memory (MemoryError); give the job more memory" % (fov, who)
    msg = one_line(exc, 400)
    return "FOV %d: %s raised %s%s" % (fov, who, type(exc).__name__, (": " + msg) if msg else "")


# ---------------------------------------------------------------------------------------
# result conversion: any result type -> (header, rows) of the FOV's CSV

LEADING = HEADER                       # the contract: every table starts with these six columns
PHYSICAL = ("xc", "yc", "zc")          # starfish's Coordinates: kept right after them
MAX_EXTRA_COLUMNS = 32                 # further columns a recipe returns are dropped (named on stderr)
MAX_NAME = 64                          # characters of a column name
MAX_CELL = 200                         # characters of a text cell
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.]")
# columns that feed the leading ones, in order of preference (case-insensitive)
_SOURCES = {"x": ("x", "xc_px", "x_px"), "y": ("y", "yc_px", "y_px"), "z": ("z",),
            "target": ("target", "gene", "targets"), "quality": ("quality", "score")}


def _is_missing(v):
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    s = str(v).strip()
    return s == "" or s.lower() in ("nan", "none", "null")


def _columns_from_mapping_rows(rows):
    """A list of dicts as columns, keys in the order they first appear."""
    keys = []
    for r in rows:
        keys.extend(k for k in r.keys() if k not in keys)
    return {k: [r.get(k) for r in rows] for k in keys}, len(rows)


def _unwrap(result):
    """The table inside a starfish result: IntensityTable / DecodedIntensityTable through
    to_features_dataframe() (pixel x, y, z, physical xc, yc, zc, target, distance, ...);
    DecodedSpots through .data (to_decoded_dataframe(): physical coordinates only)."""
    if hasattr(result, "to_features_dataframe"):
        result = result.to_features_dataframe()
    if not hasattr(result, "columns") and hasattr(result, "data") and hasattr(result.data, "columns"):
        result = result.data
    return result


def result_columns(result):
    """Return (columns: ordered dict name -> sequence, n rows) for any supported return value."""
    if result is None:
        raise TypeError("recipe returned None; return the decoded spots, e.g. `return decoded` (a "
                        "DecodedIntensityTable) or a list of dicts like [{'x': 10.5, 'y': 20.0, 'target': 'ACTB'}]")
    result = _unwrap(result)
    if hasattr(result, "columns") and hasattr(result, "__getitem__") and hasattr(result, "__len__"):
        return {str(c): list(result[c]) for c in result.columns}, len(result)  # a (pandas) DataFrame
    dtype = getattr(result, "dtype", None)
    if dtype is not None and getattr(dtype, "names", None):  # numpy structured array
        return {n: result[n].tolist() for n in dtype.names}, len(result)
    if dtype is not None and getattr(result, "size", None) == 0:  # np.array([]): nothing found
        return {}, 0
    if isinstance(result, dict):
        cols = {str(k): list(v) for k, v in result.items()}
        lengths = set(len(v) for v in cols.values())
        if len(lengths) > 1:
            raise TypeError("recipe returned a dict of columns of different lengths (%s); give every "
                            "column one value per spot" % ", ".join("%s: %d" % (k, len(v)) for k, v in cols.items()))
        return cols, (lengths.pop() if lengths else 0)
    if isinstance(result, (list, tuple)) and all(isinstance(r, dict) for r in result):
        return _columns_from_mapping_rows(result)
    raise TypeError("recipe returned %s; expected a DecodedIntensityTable, DecodedSpots, DataFrame, numpy "
                    "structured array, dict of columns or list of dicts like [{'x': 10.5, 'y': 20.0, "
                    "'target': 'ACTB'}]" % type(result).__name__)


def _safe_name(name):
    """A column name that cannot break the header: letters, digits, _ and . only."""
    s = _NAME_BAD.sub("_", str(name))[:MAX_NAME]
    return s if s[:1].isalpha() or s[:1] == "_" else "_" + s[:MAX_NAME - 1]


def cell(v):
    """One value as CSV text a spreadsheet shows and never runs: numbers as numbers, text on one
    line, capped, and a leading = + - @ made literal with a quote (unless it is a number)."""
    if _is_missing(v):
        return ""
    if type(v).__name__ in ("bool", "bool_"):
        return "True" if v else "False"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        return "%.9g" % float(v) if math.isfinite(float(v)) else ""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return sio.csv_text(v, MAX_CELL)


def _pick(cols, names):
    """The first column named one of ``names`` (exactly, else in another case; the first such
    column wins): (its name, values) or (None, None)."""
    lower = {}
    for k in cols:
        lower.setdefault(k.lower(), k)
    for n in names:
        if n in cols:
            return n, cols[n]
    for n in names:
        if n in lower:
            return lower[n], cols[lower[n]]
    return None, None


def _extra_columns(cols, used):
    """(output name, source name) of every column beyond the leading six: physical coordinates first,
    then the recipe's own order; names made safe and unique, at most MAX_EXTRA_COLUMNS."""
    lead = set(LEADING) | {"fov"}
    rest = [k for k in cols if k not in used and k.lower() not in lead]
    ordered = [k for p in PHYSICAL for k in rest if k == p] + [k for k in rest if k not in PHYSICAL]
    out, taken = [], set(LEADING)
    for k in ordered:
        name, i = _safe_name(k), 2
        while name.lower() in taken:
            name, i = "%s_%d" % (_safe_name(k)[:MAX_NAME - 4], i), i + 1
        taken.add(name.lower())
        out.append((name, k))
    if len(out) > MAX_EXTRA_COLUMNS:
        print("process-fov: warning: the recipe returned %d columns beyond fov,x,y,z,target,quality; "
              "the first %d are kept, dropped: %s" % (len(out), MAX_EXTRA_COLUMNS,
                                                      one_line(", ".join(n for n, _ in out[MAX_EXTRA_COLUMNS:]), 300)),
              file=sys.stderr)
    return out[:MAX_EXTRA_COLUMNS]


def _number(values, i, what):
    try:
        v = float(values[i])
    except (TypeError, ValueError):
        raise ValueError("spot %d has a non-numeric %s %r" % (i, what, values[i]))
    if not math.isfinite(v):
        raise ValueError("spot %d has a non-finite %s %r" % (i, what, values[i]))
    return v


def _quality(q, distance, intensity, i):
    """quality as is, else 1 - distance (starfish's decoders), else intensity, else 1; in [0, 1]."""
    for values, f in ((q, lambda v: v), (distance, lambda v: 1.0 - v), (intensity, lambda v: v)):
        if values is not None and not _is_missing(values[i]):
            v = f(float(values[i]))
            return min(1.0, max(0.0, v)) if math.isfinite(v) else 0.0
    return 1.0


def to_table(fov, result):
    """A recipe's return value as the FOV's CSV: (header, rows of strings). Empty results (no rows,
    or no columns) give the header alone: a FOV without spots is a success with 0 spots."""
    cols, n = result_columns(result)
    used = {}
    for lead, names in _SOURCES.items():
        used[lead] = _pick(cols, names)
    pixel = used["x"][1] is not None and used["y"][1] is not None
    physical = "xc" in cols and "yc" in cols  # starfish's names, exactly
    extras = _extra_columns(cols, {k for k, _ in used.values() if k is not None})
    header = list(LEADING) + [name for name, _ in extras]
    if n == 0:
        return header, []
    if used["target"][1] is None or not (pixel or physical):
        raise ValueError("recipe result has columns %s; needs target and pixel x, y (or starfish's physical "
                         "xc, yc), e.g. [{'x': 10.5, 'y': 20.0, 'target': 'ACTB'}]"
                         % one_line(", ".join(sorted(cols)) or "none", 300))
    xs, ys, zs, targets = used["x"][1], used["y"][1], used["z"][1], used["target"][1]
    q = used["quality"][1]
    distance = _pick(cols, ("distance",))[1] if q is None else None
    intensity = _pick(cols, ("intensity",))[1] if q is None and distance is None else None
    passes = _pick(cols, ("passes_thresholds",))[1]
    rows = []
    for i in range(n):
        if passes is not None and not _is_missing(passes[i]) and not bool(passes[i]):
            continue  # starfish: the decoder's thresholds refused this feature
        if _is_missing(targets[i]):
            continue  # not decoded to any codebook target
        if pixel:
            x, y = _number(xs, i, "x"), _number(ys, i, "y")
            z = 0 if zs is None or _is_missing(zs[i]) else int(round(_number(zs, i, "z")))
            lead = ["%.2f" % x, "%.2f" % y, str(z)]
        else:  # DecodedSpots: starfish dropped the pixel coordinates; the spot is placed by xc, yc
            _number(cols["xc"], i, "xc"), _number(cols["yc"], i, "yc")
            lead = ["", "", "" if zs is None or _is_missing(zs[i]) else str(int(round(_number(zs, i, "z"))))]
        quality = "%.3f" % _quality(q, distance, intensity, i)
        rows.append([str(fov)] + lead + [cell(targets[i]), quality] + [cell(cols[k][i]) for _, k in extras])
    return header, rows


def render_csv(header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------

def fov_paths(fov_output, fov):
    """(table URL, error record URL) of ``fov`` under the FOV output location."""
    name = sio.fov_name(fov)
    return sio.join(fov_output, name + ".csv"), sio.join(fov_output, name + ".error.json")


def metrics_path(fov_output, fov):
    """The URL of ``fov``'s measurements (fov_NNN.metrics.json) under the FOV output location."""
    return sio.join(fov_output, sio.fov_name(fov) + ".metrics.json")


# ---------------------------------------------------------------------------------------
# measurements: wall time, CPU time and peak memory of one FOV (containers/README.md, "Metrics")

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


def _reset_peak_rss():
    """Starts a new peak-RSS window (Linux >= 4.0: writing 5 to clear_refs resets the kernel's
    high-water mark to the current RSS), so the 2nd..Kth FOV of a packed child report their own
    peak, not the chunk's. False where that is unavailable (macOS): the peak is then the process's
    since it started."""
    try:
        with open(_CLEAR_REFS, "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib():
    """The process's resident high-water mark in MiB: VmHWM (since the last reset), else ru_maxrss."""
    try:
        with open(_STATUS) as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0  # bytes there, KiB on Linux


def _cpu_seconds():
    """User + system CPU time of this process and of the children it has waited for (a recipe that
    forks workers, e.g. multiprocessing, is charged for them once they end)."""
    import resource
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class Meter(object):
    """Measures one FOV from its check to its table (or error record)."""

    def __init__(self):
        _reset_peak_rss()
        self.wall0, self.cpu0 = time.monotonic(), _cpu_seconds()

    def record(self, fov):
        return {"fov": fov, "wall_seconds": round(time.monotonic() - self.wall0, 3),
                "cpu_seconds": round(max(0.0, _cpu_seconds() - self.cpu0), 3),
                "peak_rss_mib": round(_peak_rss_mib(), 1)}


def write_metrics(output, metrics):
    """fov_NNN.metrics.json; a warning when it cannot be written: the FOV's outcome stands."""
    url = metrics_path(output, metrics["fov"])
    try:
        sio.write_text(url, json.dumps(metrics) + "\n", content_type="application/json", tags=sio.INTERMEDIATE_TAGS)
    except Exception as exc:  # e.g. a full disk, which the table's own failure already reports
        said = sio.describe_os_error(exc) if isinstance(exc, OSError) else one_line(exc, 200)
        print("process-fov: warning: could not write %s: %s" % (url, said), file=sys.stderr)


# ---------------------------------------------------------------------------------------
# the child: its environment, its recipe, then each FOV of its chunk in turn

class Job(object):
    """What a child was asked to do, once its environment is read."""
    __slots__ = ("run_id", "experiment", "recipe_url", "output", "local_mode", "fn", "convention", "cache")

    def __init__(self, run_id, experiment, recipe_url, output):
        self.run_id, self.experiment, self.recipe_url, self.output = run_id, experiment, recipe_url, output
        # A remote experiment's checks and recipe read no local file through starfish_io, whatever
        # the experiment refers to (the recipe itself, named by the launcher, is read before).
        self.local_mode = is_local_experiment(experiment)
        self.fn = self.convention = None
        self.cache = {}  # starfish's Experiment, loaded once per child (the tutorial convention)


def _clear_stale_error(err_url):
    try:
        sio.remove(err_url)
    except Exception as exc:
        print("process-fov: warning: could not remove stale %s: %s" % (err_url, exc), file=sys.stderr)


def prepare(environ, state):
    """Reads the environment and loads the recipe, once per child: Failure (exit 2) or
    sio.EnvError before any FOV runs. Fills state["output"], state["chunk"] and state["done"] (how
    many of its FOVs have an outcome) as soon as they are known, so that a failure of the whole
    child can be recorded for each FOV left."""
    output = sio.require_output_env(environ, "STARFISH_FOV_OUTPUT")
    state["output"] = output
    chunk = resolve_chunk(environ)
    state["chunk"], state["done"] = chunk, 0
    # An earlier attempt's reasons must not outlive it: if this attempt is killed (out of memory,
    # Spot reclaim) before it can write its own, no reason beats a wrong one. All of the chunk's
    # go now, since a kill part-way leaves the later FOVs without a word from this attempt.
    for fov in chunk:
        _clear_stale_error(fov_paths(output, fov)[1])
    job = Job(sio.require_env(environ, "STARFISH_RUN_ID"), sio.require_env(environ, "STARFISH_EXPERIMENT"),
              sio.require_env(environ, "STARFISH_RECIPE"), output)
    job.fn = load_recipe(job.recipe_url)
    job.convention = recipe_convention(job.fn, job.recipe_url)
    return job, chunk


def run_fov(job, fov):
    """Check, run, convert and write one FOV; returns its number of spots; raises Failure."""
    csv_url, _ = fov_paths(job.output, fov)
    with sio.local_files(job.local_mode):
        # The FOV's name as the experiment writes it (fov_0007 as well as fov_007): what recipes are given.
        fov_name = check_experiment(job.experiment, fov).name
    print("process-fov: run %s: FOV %d (%s) of %s with recipe %s"
          % (job.run_id, fov, fov_name, job.experiment, job.recipe_url))
    sys.stdout.flush()
    t0 = time.monotonic()
    with sio.local_files(job.local_mode):
        args = recipe_arguments(job.convention, job.experiment, fov, fov_name, job.cache)
        try:
            result = job.fn(*args)
        except (Exception, SystemExit) as exc:  # the recipe's own failure (MemoryError, sys.exit included)
            raise Failure(describe_recipe_error(fov, exc), EXIT_FAILURE, show_traceback=True)
    try:
        header, rows = to_table(fov, result)
    except (Exception, SystemExit) as exc:  # the result's own methods are recipe code too
        raise Failure("FOV %d: recipe result could not be converted: %s" % (fov, one_line(exc, 400)),
                      EXIT_FAILURE, show_traceback=True)
    result = None  # the recipe's objects go before the next FOV, not after it
    try:
        sio.write_text(csv_url, render_csv(header, rows), content_type="text/csv", tags=sio.INTERMEDIATE_TAGS)
    except OSError as exc:  # a full disk (ENOSPC), no permission (EACCES), a failing disk (EIO)
        raise Failure("FOV %d: %s" % (fov, sio.write_failure(csv_url, exc, job.run_id)), EXIT_FAILURE)
    print("process-fov: FOV %d: %d spots in %.1f s -> %s" % (fov, len(rows), time.monotonic() - t0, csv_url))
    return len(rows)


def _fov_failure(fov, exc):
    """A Failure for what stopped one FOV outside the recipe's own call (a bug, an IO error)."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, sio.EnvError):
        return Failure(str(exc), EXIT_BAD_ENV)
    return Failure("FOV %d: %s: %s" % (fov, type(exc).__name__, one_line(exc, 400)), EXIT_FAILURE, show_traceback=True)


def run_one(job, fov):
    """One FOV of the chunk, measured: (exit code, reason), (0, None) on success. Its table or its
    error record, then its metrics, are written; nothing it raises stops the chunk but an interrupt.

    After a MemoryError the next FOV still runs: Python is usable once the failed allocation has
    unwound (the recipe's arrays go with its frames, collected below), and a FOV that needs less
    memory may well succeed; a kill by the kernel's OOM killer ends the whole child instead."""
    sio.take_fov_facts()  # what the recipe said at import or about the previous FOV is not this FOV's
    meter = Meter()
    try:
        run_fov(job, fov)
        code, reason = 0, None
    except Exception as exc:  # MemoryError included
        failure = _fov_failure(fov, exc)
        if failure.show_traceback:
            traceback.print_exc()
        code, reason = failure.code, one_line(failure.reason)
        failure = exc = None  # drop the traceback and the recipe's frames it holds
        gc.collect()
        write_error(job.output, fov, reason)
    metrics = meter.record(fov)
    # Kept for a failed FOV too: a registration shift measured before decoding failed says why.
    facts, problems = sio.take_fov_facts()
    for problem in problems[:5]:
        print("process-fov: warning: FOV %d: recipe fact left out: %s" % (fov, one_line(problem, 300)), file=sys.stderr)
    if len(problems) > 5:
        print("process-fov: warning: FOV %d: ... and %d more recipe facts left out" % (fov, len(problems) - 5),
              file=sys.stderr)
    if facts:
        metrics["recipe_facts"] = facts
    write_metrics(job.output, metrics)
    return code, reason


def run_chunk(job, chunk, state):
    """Every FOV of the chunk in turn; [(fov, code, reason)] of those that failed."""
    failed = []
    # The experiment's own documents (experiment.json, codebook, collections) are read once a chunk.
    with spacetx.reading_once():
        for fov in chunk:
            code, reason = run_one(job, fov)
            state["done"] += 1
            if code:
                failed.append((fov, code, reason))
                if len(chunk) > 1:  # a chunk of one says it once, as its last line
                    print(PREFIX + reason, file=sys.stderr)
    return failed


def chunk_failure(chunk, failed):
    """The child's failure for the FOVs that failed (None when none did): exit 2 when one was a bad
    request (a FOV not in the experiment), else 1. A chunk of one keeps that FOV's reason as its
    last line; a longer one says how many failed and names them, the first reason after."""
    if not failed:
        return None
    code = max(c for _, c, _ in failed)
    if len(chunk) == 1:
        return Failure(failed[0][2], code)
    return Failure("%d of %d FOVs failed (%s); first: %s"
                   % (len(failed), len(chunk), sio.format_fov_ranges(f for f, _, _ in failed), failed[0][2]), code)


def main(environ=None):
    environ = os.environ if environ is None else environ
    state = {}
    try:
        job, chunk = prepare(environ, state)
        failure = chunk_failure(chunk, run_chunk(job, chunk, state))
        if failure is None:
            return 0
        sys.stdout.flush()
        print(PREFIX + one_line(failure.reason), file=sys.stderr)
        sys.stderr.flush()
        return failure.code
    except Failure as f:
        failure = f
        if f.show_traceback:
            traceback.print_exc()
    except sio.EnvError as exc:  # a missing or malformed variable
        failure = Failure(str(exc), EXIT_BAD_ENV)
    except KeyboardInterrupt:
        failure = Failure("interrupted", 130)
    except Exception as exc:  # bug or IO failure outside the recipe
        traceback.print_exc()
        failure = Failure("%s: %s" % (type(exc).__name__, one_line(exc, 400)), EXIT_FAILURE)
    return _report(failure, state)


def write_error(output, fov, reason):
    """fov_NNN.error.json with the one-line reason; a warning when the disk refuses it too."""
    _, err_url = fov_paths(output, fov)
    try:
        sio.write_text(err_url, json.dumps({"fov": fov, "reason": reason}) + "\n",
                       content_type="application/json", tags=sio.INTERMEDIATE_TAGS)
    except Exception as exc:  # e.g. the disk that refused the table refuses this too
        said = sio.describe_os_error(exc) if isinstance(exc, OSError) else one_line(exc, 200)
        print("process-fov: warning: could not write %s: %s" % (err_url, said), file=sys.stderr)


def _report(failure, state):
    """A failure of the whole child (before or between its FOVs): the reason for every FOV of the
    chunk that has no outcome yet, and as the last line."""
    reason = one_line(failure.reason)
    sys.stdout.flush()
    if "output" in state and "chunk" in state:
        for fov in state["chunk"][state["done"]:]:
            write_error(state["output"], fov, reason)
    print(PREFIX + reason, file=sys.stderr)
    sys.stderr.flush()
    return failure.code


if __name__ == "__main__":
    sys.exit(main())
