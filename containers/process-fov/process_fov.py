#!/usr/bin/env python3
"""process-fov: run a starfish recipe on ONE field of view and write its spot table.

Entry point of the process-fov image (one AWS Batch array child per FOV), also run
directly by the local runner.  The contract is in containers/README.md; in short:

  STARFISH_EXPERIMENT   URL/path of a SpaceTx experiment.json
  STARFISH_RECIPE       URL/path of a .py defining process_fov(fov_index, experiment_url)
  STARFISH_OUTPUT       URL/path prefix of the run
  AWS_BATCH_JOB_ARRAY_INDEX (default 0) + STARFISH_FOV_OFFSET (default 0) -> FOV index
  or STARFISH_FOV_LIST  comma-separated FOV indices; FOV = list[array index]

Writes <output>/fovs/fov_NNN.csv (fov,x,y,z,target,quality).  On failure the last line
on stderr is "process-fov: <reason>", <output>/fovs/fov_NNN.error.json records the
reason, and the exit code is 2 (bad environment/configuration) or 1 (recipe/data failure).
"""
import csv
import io
import json
import math
import os
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
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[:limit - 3] + "..."
    return s


# ---------------------------------------------------------------------------------------
# environment

def _env(environ, name):
    value = environ.get(name)
    if value is None or not str(value).strip():
        return None
    return str(value).strip()


def _nonneg_int(environ, name, default):
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Failure("%s must be a non-negative integer, got %r" % (name, raw), EXIT_BAD_ENV)
    if value < 0:
        raise Failure("%s must be a non-negative integer, got %r" % (name, raw), EXIT_BAD_ENV)
    return value


def parse_fov_list(text):
    """Ordered list from 'a,b,c' (a-b ranges are expanded in place). Order matters:
    the array index picks the entry at that position."""
    out = []
    for raw in text.split(","):
        part = raw.strip()
        if part.isdigit():
            out.append(int(part))
        elif "-" in part and all(p.strip().isdigit() for p in part.split("-", 1)):
            lo, hi = (int(p) for p in part.split("-", 1))
            if lo > hi:
                raise ValueError("bad range %r" % part)
            out.extend(range(lo, hi + 1))
        else:
            raise ValueError("bad FOV index %r" % part)
    return out


def resolve_fov(environ):
    """FOV index from AWS_BATCH_JOB_ARRAY_INDEX + STARFISH_FOV_OFFSET or STARFISH_FOV_LIST."""
    index = _nonneg_int(environ, "AWS_BATCH_JOB_ARRAY_INDEX", 0)
    fov_list = _env(environ, "STARFISH_FOV_LIST")
    if fov_list is not None:
        try:
            fovs = parse_fov_list(fov_list)
        except ValueError as exc:
            raise Failure("STARFISH_FOV_LIST must be comma-separated non-negative integers "
                          "(e.g. 3,7,12), got %r: %s" % (fov_list, exc), EXIT_BAD_ENV)
        if index >= len(fovs):
            raise Failure("AWS_BATCH_JOB_ARRAY_INDEX=%d is beyond STARFISH_FOV_LIST (%d entries: %s)"
                          % (index, len(fovs), one_line(fov_list, 80)), EXIT_BAD_ENV)
        return fovs[index]
    offset = _nonneg_int(environ, "STARFISH_FOV_OFFSET", 0)
    return offset + index


ENV_EXAMPLES = {
    "STARFISH_EXPERIMENT": "s3://lab-data/iss/experiment.json",
    "STARFISH_RECIPE": "s3://lab-data/recipes/iss.py",
    "STARFISH_OUTPUT": "s3://lab-results/runs/261125-k3f9",
}


def require(environ, name):
    value = _env(environ, name)
    if value is None:
        raise Failure("%s is not set; example: %s=%s" % (name, name, ENV_EXAMPLES[name]), EXIT_BAD_ENV)
    return value


# ---------------------------------------------------------------------------------------
# experiment checks (cheap, before running the recipe)

def _load_json(url, what, code):
    try:
        return json.loads(sio.read_text(url))
    except FileNotFoundError:
        raise Failure("%s not found: %s" % (what, url), code)
    except ValueError as exc:
        raise Failure("%s is not valid JSON: %s: %s" % (what, url, exc), code)


def check_experiment(experiment_url, fov):
    """Verify the experiment exists and lists the FOV; for local data also verify that
    the FOV's primary tiles exist. Returns the FOV's tile-set URL (or None)."""
    exp = _load_json(experiment_url, "experiment", EXIT_BAD_ENV)
    images = exp.get("images") if isinstance(exp, dict) else None
    if not isinstance(images, dict) or "primary" not in images:
        raise Failure("experiment %s has no images.primary entry (not a SpaceTx experiment.json?)"
                      % experiment_url, EXIT_BAD_ENV)
    base = sio.dirname(experiment_url)
    manifest_url = sio.join(base, images["primary"])
    manifest = _load_json(manifest_url, "primary image manifest", EXIT_FAILURE)
    name = sio.fov_name(fov)
    contents = manifest.get("contents") if isinstance(manifest, dict) else None
    if not isinstance(contents, dict):
        # a single-FOV experiment may point straight at a tile set
        if isinstance(manifest, dict) and "tiles" in manifest and fov == 0:
            return manifest_url
        raise Failure("primary image manifest %s has no 'contents'" % manifest_url, EXIT_FAILURE)
    if name not in contents:
        names = sorted(contents)
        desc = "%d FOVs: %s..%s" % (len(names), names[0], names[-1]) if names else "no FOVs"
        raise Failure("FOV %d (%s) is not in the experiment (primary images have %s)"
                      % (fov, name, desc), EXIT_BAD_ENV)
    tileset_url = sio.join(sio.dirname(manifest_url), contents[name])
    if sio.local_path(tileset_url) is not None:
        tileset = _load_json(tileset_url, "FOV %d: tile list" % fov, EXIT_FAILURE)
        tbase = sio.dirname(tileset_url)
        for tile in tileset.get("tiles", []) if isinstance(tileset, dict) else []:
            f = tile.get("file") if isinstance(tile, dict) else None
            if f and "://" not in f:
                path = sio.join(tbase, f)
                if not os.path.exists(sio.local_path(path)):
                    raise Failure("FOV %d: tile not found: %s" % (fov, path), EXIT_FAILURE)
    return tileset_url


# ---------------------------------------------------------------------------------------
# recipe loading and running

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
    except Exception as exc:
        raise Failure("recipe %s failed to load: %s: %s"
                      % (recipe_url, type(exc).__name__, one_line(exc, 300)), EXIT_BAD_ENV,
                      show_traceback=True)
    fn = getattr(module, "process_fov", None)
    if not callable(fn):
        raise Failure("recipe %s does not define process_fov(fov_index, experiment_url)"
                      % recipe_url, EXIT_BAD_ENV)
    return fn


def _find_not_found(exc):
    """Walk the exception chain for a FileNotFoundError; return its filename (or None)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, FileNotFoundError):
            return exc.filename or (exc.args[0] if exc.args else None) or "?"
        exc = exc.__cause__ or exc.__context__
    return None


def describe_recipe_error(fov, exc):
    missing = _find_not_found(exc)
    if missing is not None:
        kind = "tile" if str(missing).lower().endswith(TILE_EXTENSIONS) else "file"
        return "FOV %d: %s not found: %s" % (fov, kind, missing)
    if isinstance(exc, MemoryError):
        return "FOV %d: recipe ran out of memory (MemoryError); give the job more memory" % fov
    msg = one_line(exc, 400)
    return "FOV %d: recipe raised %s%s" % (fov, type(exc).__name__, (": " + msg) if msg else "")


# ---------------------------------------------------------------------------------------
# result conversion

def _is_missing(v):
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    s = str(v).strip()
    return s == "" or s.lower() in ("nan", "none", "null")


def _columns_from_mapping_rows(rows):
    cols = {}
    keys = set()
    for r in rows:
        keys.update(r.keys())
    for k in keys:
        cols[k] = [r.get(k) for r in rows]
    return cols, len(rows)


def result_columns(result):
    """Return (columns dict name -> sequence, n rows) for any supported return value."""
    if result is None:
        raise TypeError("recipe returned None (expected decoded spots)")
    # starfish DecodedIntensityTable (an xarray DataArray with a features dimension)
    if hasattr(result, "to_features_dataframe"):
        result = result.to_features_dataframe()
    # starfish DecodedSpots / anything wrapping a DataFrame in .data
    if not hasattr(result, "columns") and hasattr(result, "data") and hasattr(result.data, "columns"):
        result = result.data
    # pandas DataFrame (duck-typed: pandas is not needed here)
    if hasattr(result, "columns") and hasattr(result, "__getitem__") and hasattr(result, "__len__"):
        cols = {str(c): list(result[c]) for c in result.columns}
        return cols, len(result)
    # numpy structured array
    dtype = getattr(result, "dtype", None)
    if dtype is not None and getattr(dtype, "names", None):
        cols = {n: result[n].tolist() for n in dtype.names}
        return cols, len(result)
    # dict of columns
    if isinstance(result, dict):
        cols = {str(k): list(v) for k, v in result.items()}
        lengths = set(len(v) for v in cols.values())
        if len(lengths) > 1:
            raise TypeError("recipe returned a dict of columns of different lengths")
        return cols, (lengths.pop() if lengths else 0)
    # list/tuple of dicts
    if isinstance(result, (list, tuple)):
        if all(isinstance(r, dict) for r in result):
            return _columns_from_mapping_rows(result)
    raise TypeError("recipe returned %s; expected a DecodedIntensityTable, DataFrame, numpy "
                    "structured array or list of dicts with x, y, target" % type(result).__name__)


def to_rows(fov, result):
    """Normalise a recipe's return value into CSV rows (fov, x, y, z, target, quality)."""
    cols, n = result_columns(result)
    lower = {k.lower(): k for k in cols}

    def col(*names):
        for nm in names:
            if nm in lower:
                return cols[lower[nm]]
        return None

    xs, ys = col("x", "xc_px", "x_px"), col("y", "yc_px", "y_px")
    zs = col("z")
    targets = col("target", "gene", "targets")
    if xs is None or ys is None or targets is None:
        raise ValueError("recipe result has columns %s; needs x, y and target"
                         % ", ".join(sorted(cols)) if cols else "recipe result has no columns")
    quality = col("quality", "score")
    distance = col("distance") if quality is None else None
    intensity = col("intensity") if quality is None and distance is None else None
    passes = col("passes_thresholds")

    rows = []
    for i in range(n):
        if passes is not None and passes[i] is not None and not bool(passes[i]):
            continue
        target = targets[i]
        if _is_missing(target):
            continue  # not decoded to any codebook target
        target = " ".join(str(target).split())
        try:
            x, y = float(xs[i]), float(ys[i])
        except (TypeError, ValueError):
            raise ValueError("spot %d has a non-numeric coordinate x=%r y=%r" % (i, xs[i], ys[i]))
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError("spot %d has a non-finite coordinate x=%r y=%r" % (i, xs[i], ys[i]))
        z = 0
        if zs is not None and not _is_missing(zs[i]):
            z = int(round(float(zs[i])))
        if quality is not None and not _is_missing(quality[i]):
            q = float(quality[i])
        elif distance is not None and not _is_missing(distance[i]):
            q = 1.0 - float(distance[i])
        elif intensity is not None and not _is_missing(intensity[i]):
            q = float(intensity[i])
        else:
            q = 1.0
        q = min(1.0, max(0.0, q)) if math.isfinite(q) else 0.0
        rows.append((fov, "%.2f" % x, "%.2f" % y, z, target, "%.3f" % q))
    return rows


def render_csv(rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows(rows)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------

def fov_paths(output, fov):
    base = sio.join(output, "fovs")
    name = sio.fov_name(fov)
    return sio.join(base, name + ".csv"), sio.join(base, name + ".error.json")


def run(environ, state):
    """Do the work; raise Failure on any problem. Fills state["output"], state["fov"]."""
    output = require(environ, "STARFISH_OUTPUT").rstrip("/")
    state["output"] = output
    fov = resolve_fov(environ)
    state["fov"] = fov
    return _run_fov(environ, output, fov)


def _clear_stale_error(err_url):
    try:
        sio.remove(err_url)
    except Exception as exc:
        print("process-fov: warning: could not remove stale %s: %s" % (err_url, exc), file=sys.stderr)


def _run_fov(environ, output, fov):
    csv_url, err_url = fov_paths(output, fov)
    # An earlier attempt's reason must not outlive it: if this attempt is killed (out of memory,
    # Spot reclaim) before it can write its own, no reason beats a wrong one.
    _clear_stale_error(err_url)
    experiment = require(environ, "STARFISH_EXPERIMENT")
    recipe_url = require(environ, "STARFISH_RECIPE")
    check_experiment(experiment, fov)
    fn = load_recipe(recipe_url)
    print("process-fov: FOV %d (%s) of %s with recipe %s" % (fov, sio.fov_name(fov), experiment, recipe_url))
    sys.stdout.flush()
    t0 = time.time()
    try:
        result = fn(fov, experiment)
    except Exception as exc:  # the recipe's own failure
        raise Failure(describe_recipe_error(fov, exc), EXIT_FAILURE, show_traceback=True)
    try:
        rows = to_rows(fov, result)
    except Exception as exc:
        raise Failure("FOV %d: recipe result could not be converted: %s" % (fov, one_line(exc, 300)),
                      EXIT_FAILURE, show_traceback=True)
    sio.write_text(csv_url, render_csv(rows), content_type="text/csv", tags=sio.INTERMEDIATE_TAGS)
    print("process-fov: FOV %d: %d spots in %.1f s -> %s" % (fov, len(rows), time.time() - t0, csv_url))
    return len(rows)


def main(environ=None):
    environ = os.environ if environ is None else environ
    state = {}
    try:
        run(environ, state)
        return 0
    except Failure as f:
        failure = f
        if f.show_traceback:
            traceback.print_exc()
    except KeyboardInterrupt:
        failure = Failure("interrupted", 130)
    except Exception as exc:  # bug or IO failure outside the recipe
        traceback.print_exc()
        failure = Failure("%s%s: %s" % ("FOV %d: " % state["fov"] if "fov" in state else "",
                                        type(exc).__name__, one_line(exc, 400)), EXIT_FAILURE)
    return _report(failure, state)


def _report(failure, state):
    reason = one_line(failure.reason)
    sys.stdout.flush()
    if "output" in state and "fov" in state:
        _, err_url = fov_paths(state["output"], state["fov"])
        try:
            sio.write_text(err_url, json.dumps({"fov": state["fov"], "reason": reason}) + "\n",
                           content_type="application/json", tags=sio.INTERMEDIATE_TAGS)
        except Exception as exc:
            print("process-fov: warning: could not write %s: %s" % (err_url, one_line(exc, 200)),
                  file=sys.stderr)
    print(PREFIX + reason, file=sys.stderr)
    sys.stderr.flush()
    return failure.code


if __name__ == "__main__":
    sys.exit(main())
