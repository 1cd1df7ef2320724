#!/usr/bin/env python3
"""process-fov: run a starfish recipe on ONE field of view and write its spot table.

Entry point of the process-fov image (one AWS Batch array child per FOV), also run
directly by the local runner.  The contract is in containers/README.md; in short:

  STARFISH_RUN_ID       the run id, e.g. 261125-k3f9 (for the log lines)
  STARFISH_EXPERIMENT   URL/path of a SpaceTx experiment.json
  STARFISH_RECIPE       URL/path of a .py defining process_fov(fov_index, experiment_url)
  STARFISH_FOVS         the FOVs of this job as range text, e.g. 0-9999 or 1-3,7,9-12;
                        array child i (AWS_BATCH_JOB_ARRAY_INDEX, default 0 for a plain job)
                        processes the i-th FOV of that list in ascending order
  STARFISH_FOV_OUTPUT   URL/path where the FOV's files go (s3://bucket/outputs/<run>/fovs)

Everything the experiment refers to is checked against the URL policy first
(starfish_io.resolve_reference: https at public addresses only, no http://, and file:// or
absolute paths only when the experiment itself is local); a remote experiment's checks and
recipe read no local file through starfish_io.

Writes <fov output>/fov_NNN.csv (fov,x,y,z,target,quality), whole or not at all (a temporary
name, then a rename).  On failure the last line on stderr is "process-fov: <reason>",
<fov output>/fov_NNN.error.json records the reason (when the output location and the FOV are
known, and the disk takes it), and the exit code is 2 (bad environment/configuration) or 1
(recipe/data failure, or the table could not be written: a full disk says so, with the next step).
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

def _array_index(environ):
    """AWS_BATCH_JOB_ARRAY_INDEX: absent for a plain (non-array) job, which is child 0."""
    raw = sio.env_value(environ, "AWS_BATCH_JOB_ARRAY_INDEX")
    if raw is None:
        return 0
    if not all(c in "0123456789" for c in raw):
        raise Failure("AWS_BATCH_JOB_ARRAY_INDEX must be a non-negative integer, got %r" % raw, EXIT_BAD_ENV)
    return int(raw)


def resolve_fov(environ):
    """The FOV of this child: the AWS_BATCH_JOB_ARRAY_INDEX-th of STARFISH_FOVS (ascending)."""
    fovs = sio.require_fovs_env(environ, "STARFISH_FOVS")
    index = _array_index(environ)
    if index >= len(fovs):
        raise Failure("AWS_BATCH_JOB_ARRAY_INDEX=%d is beyond STARFISH_FOVS=%s (%d FOV%s)"
                      % (index, one_line(str(fovs), 80), len(fovs), "" if len(fovs) == 1 else "s"),
                      EXIT_BAD_ENV)
    return fovs[index]


# ---------------------------------------------------------------------------------------
# experiment checks (cheap, before running the recipe)

def _load_json(url, what, code):
    try:
        return json.loads(sio.read_text(url))
    except FileNotFoundError:
        raise Failure("%s not found: %s" % (what, url), code)
    except sio.UrlRefused as exc:
        raise Failure("%s: %s" % (what, exc), EXIT_BAD_ENV)
    except ValueError as exc:
        raise Failure("%s is not valid JSON: %s: %s" % (what, url, exc), code)


def is_local_experiment(experiment_url):
    """Local mode: the experiment is a path or file:// URL, so it may name local files."""
    return sio.local_path(experiment_url) is not None


def _follow(base, ref, local_mode, where):
    """The location a reference in the JSON file ``base`` names, under the URL policy:
    file:// URLs and absolute paths only in local mode, never http:// (exit 2 otherwise)."""
    try:
        return sio.resolve_reference(base, ref, local_mode)
    except sio.UrlRefused as exc:
        raise Failure("%s in %s: %s" % (where, base, exc), EXIT_BAD_ENV)


def _check_tiles(tileset, tileset_url, local_mode, fov):
    """Every tile the FOV's tile set names passes the URL policy; local tiles must exist."""
    for tile in tileset.get("tiles", []) if isinstance(tileset, dict) else []:
        f = tile.get("file") if isinstance(tile, dict) else None
        if not f:
            continue
        url = _follow(tileset_url, f, local_mode, "FOV %d: tile" % fov)
        path = sio.local_path(url)
        if local_mode and path is not None and not os.path.exists(path):
            raise Failure("FOV %d: tile not found: %s" % (fov, url), EXIT_FAILURE)


def _primary_manifest(experiment_url, exp, local_mode):
    """The primary image manifest's URL, after every reference of the experiment is checked."""
    images = exp.get("images") if isinstance(exp, dict) else None
    if not isinstance(images, dict) or "primary" not in images:
        raise Failure("experiment %s has no images.primary entry (not a SpaceTx experiment.json?)"
                      % experiment_url, EXIT_BAD_ENV)
    for kind in sorted(images):
        if isinstance(images[kind], str):
            _follow(experiment_url, images[kind], local_mode, "images.%s" % kind)
    if isinstance(exp.get("codebook"), str):
        _follow(experiment_url, exp["codebook"], local_mode, "codebook")
    return _follow(experiment_url, images["primary"], local_mode, "images.primary")


def check_experiment(experiment_url, fov):
    """Verify the experiment exists and lists the FOV, and that every file it refers to for
    the FOV passes the URL policy (sio.resolve_reference); for local data also verify that
    the FOV's primary tiles exist. Returns the FOV's tile-set URL."""
    local_mode = is_local_experiment(experiment_url)
    exp = _load_json(experiment_url, "experiment", EXIT_BAD_ENV)
    manifest_url = _primary_manifest(experiment_url, exp, local_mode)
    manifest = _load_json(manifest_url, "primary image manifest", EXIT_FAILURE)
    name = sio.fov_name(fov)
    contents = manifest.get("contents") if isinstance(manifest, dict) else None
    if not isinstance(contents, dict):
        # a single-FOV experiment may point straight at a tile set
        if isinstance(manifest, dict) and "tiles" in manifest and fov == 0:
            _check_tiles(manifest, manifest_url, local_mode, fov)
            return manifest_url
        raise Failure("primary image manifest %s has no 'contents'" % manifest_url, EXIT_FAILURE)
    if name not in contents:
        names = sorted(contents)
        desc = "%d FOVs: %s..%s" % (len(names), names[0], names[-1]) if names else "no FOVs"
        raise Failure("FOV %d (%s) is not in the experiment (primary images have %s)"
                      % (fov, name, desc), EXIT_BAD_ENV)
    tileset_url = _follow(manifest_url, contents[name], local_mode, "contents.%s" % name)
    tileset = _load_json(tileset_url, "FOV %d: tile list" % fov, EXIT_FAILURE)
    _check_tiles(tileset, tileset_url, local_mode, fov)
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


def _find_refusal(exc):
    """The first UrlRefused in the exception chain (a reference the URL policy refused)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sio.UrlRefused):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def describe_recipe_error(fov, exc):
    refused = _find_refusal(exc)
    if refused is not None:
        return "FOV %d: %s" % (fov, one_line(refused, 400))
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

def fov_paths(fov_output, fov):
    """(table URL, error record URL) of ``fov`` under the FOV output location."""
    name = sio.fov_name(fov)
    return sio.join(fov_output, name + ".csv"), sio.join(fov_output, name + ".error.json")


def run(environ, state):
    """Do the work; raise Failure (or sio.EnvError) on any problem. Fills state["output"],
    state["fov"] as soon as they are known, so that a later failure can be recorded."""
    output = sio.require_output_env(environ, "STARFISH_FOV_OUTPUT")
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
    run_id = sio.require_env(environ, "STARFISH_RUN_ID")
    experiment = sio.require_env(environ, "STARFISH_EXPERIMENT")
    recipe_url = sio.require_env(environ, "STARFISH_RECIPE")
    # A remote experiment's checks and recipe read no local file through starfish_io, whatever
    # the experiment refers to (the recipe itself, named by the launcher, is read before).
    local_mode = is_local_experiment(experiment)
    with sio.local_files(local_mode):
        check_experiment(experiment, fov)
    fn = load_recipe(recipe_url)
    print("process-fov: run %s: FOV %d (%s) of %s with recipe %s"
          % (run_id, fov, sio.fov_name(fov), experiment, recipe_url))
    sys.stdout.flush()
    t0 = time.time()
    try:
        with sio.local_files(local_mode):
            result = fn(fov, experiment)
    except Exception as exc:  # the recipe's own failure
        raise Failure(describe_recipe_error(fov, exc), EXIT_FAILURE, show_traceback=True)
    try:
        rows = to_rows(fov, result)
    except Exception as exc:
        raise Failure("FOV %d: recipe result could not be converted: %s" % (fov, one_line(exc, 300)),
                      EXIT_FAILURE, show_traceback=True)
    try:
        sio.write_text(csv_url, render_csv(rows), content_type="text/csv", tags=sio.INTERMEDIATE_TAGS)
    except OSError as exc:  # a full disk (ENOSPC), no permission (EACCES), a failing disk (EIO)
        raise Failure("FOV %d: %s" % (fov, sio.write_failure(csv_url, exc, run_id)), EXIT_FAILURE)
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
    except sio.EnvError as exc:  # a missing or malformed variable
        failure = Failure(str(exc), EXIT_BAD_ENV)
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
        except Exception as exc:  # e.g. the disk that refused the table refuses this too
            said = sio.describe_os_error(exc) if isinstance(exc, OSError) else one_line(exc, 200)
            print("process-fov: warning: could not write %s: %s" % (err_url, said), file=sys.stderr)
    print(PREFIX + reason, file=sys.stderr)
    sys.stderr.flush()
    return failure.code


if __name__ == "__main__":
    sys.exit(main())
