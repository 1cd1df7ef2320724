#!/usr/bin/env python3
"""Benchmark the numpy ISS recipe's accuracy on the synthetic generator's levels.

    /usr/bin/python3 bench/recipe_accuracy.py [--levels easy,realistic,hard] [--seeds 101-105]
        [--fovs 4] [--runs 3] [--recipe examples/recipes/iss_numpy.py]

For each level and seed, generates an experiment (examples/synthetic-iss/generate.py) in a
temporary directory, runs the recipe's process_fov on every FOV (``--runs`` times, for the
time), and matches the decoded spots to ground_truth.csv: a match is the same gene within
MATCH_PX pixels, each truth spot matched at most once (best quality first). Reports per
level: decoded % (truth spots matched: recall), false positives % (reported spots matching
nothing), the median time per FOV, how many of the missed spots lie within EDGE_PX of the
tile's edge (they may be outside the tiles of some rounds), and recall per SNR band (the generator's per-spot SNR;
the easy level has none). Prints machine info and the figures as ONE JSON line at the end.
The seeds default to ones the recipe was not tuned on (it was tuned on 1-6).
"""
import argparse
import contextlib
import csv
import importlib.util
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
from scipy.spatial import cKDTree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "examples", "synthetic-iss"), os.path.join(REPO, "containers", "common")]
import generate  # noqa: E402
from merge_bench import cpu_model, mem_total_gb  # noqa: E402

MATCH_PX = 2.0
EDGE_PX = 4.0  # the largest per-round shift: closer to the edge, a spot may leave some rounds
SNR_BANDS = [(0, 4), (4, 8), (8, 12), (12, 16), (16, 24), (24, None)]


def band_name(lo, hi):
    return "%d+" % lo if hi is None else "%d-%d" % (lo, hi)


def load_recipe(path):
    spec = importlib.util.spec_from_file_location("bench_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def match(spots, truth):
    """Indices of the truth spots matched, and the number of reported spots matching none."""
    used, fp = set(), 0
    if not truth:
        return used, len(spots)
    gxy = np.array([[t["x"], t["y"]] for t in truth])
    tree = cKDTree(gxy)
    for s in sorted(spots, key=lambda s: -float(s["quality"])):
        xy = [float(s["x"]), float(s["y"])]
        hits = [i for i in sorted(tree.query_ball_point(xy, MATCH_PX), key=lambda i: np.hypot(*(gxy[i] - xy)))
                if i not in used and truth[i]["target"] == str(s["target"])]
        if hits:
            used.add(hits[0])
        else:
            fp += 1
    return used, fp


def near_edge(spot, size=256, px=EDGE_PX):
    return min(spot["x"], spot["y"], size - 1 - spot["x"], size - 1 - spot["y"]) < px


def read_truth(exp):
    with open(os.path.join(os.path.dirname(exp), "ground_truth.csv")) as fh:
        return [{"fov": int(r["fov"]), "x": float(r["x"]), "y": float(r["y"]), "target": r["target"],
                 "snr": float(r["snr"]) if r.get("snr") else None} for r in csv.DictReader(fh)]


def run_level(recipe, level, seeds, fovs, runs, root):
    truth_n = tp = fp = edge_misses = 0
    times = []
    bands = {band_name(*b): [0, 0] for b in SNR_BANDS}  # name -> [matched, total]
    for seed in seeds:
        exp = generate.generate(os.path.join(root, "%s-%d" % (level, seed)), fovs=fovs, seed=seed, level=level)
        truth = read_truth(exp)
        for fov in range(fovs):
            t = [r for r in truth if r["fov"] == fov]
            fov_times = []
            for _ in range(runs):
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    spots = recipe.process_fov(fov, exp)
                fov_times.append(time.perf_counter() - start)
            times.append(statistics.median(fov_times))
            used, false = match(spots, t)
            truth_n, tp, fp = truth_n + len(t), tp + len(used), fp + false
            edge_misses += sum(1 for i, spot in enumerate(t) if i not in used and near_edge(spot))
            for i, spot in enumerate(t):
                if spot["snr"] is None:
                    continue
                for lo, hi in SNR_BANDS:
                    if spot["snr"] >= lo and (hi is None or spot["snr"] < hi):
                        bands[band_name(lo, hi)][1] += 1
                        bands[band_name(lo, hi)][0] += i in used
        print("%s seed %d: %d truth, %d matched, %d false so far" % (level, seed, truth_n, tp, fp), file=sys.stderr)
    return {
        "fovs": len(seeds) * fovs,
        "truth_spots": truth_n,
        "decoded_pct": round(100.0 * tp / max(1, truth_n), 1),
        "false_positives_pct": round(100.0 * fp / max(1, tp + fp), 1),
        "time_per_fov_s": round(statistics.median(times), 3),
        "missed_near_edge": edge_misses,
        "recall_by_snr": {name: {"spots": n, "decoded_pct": round(100.0 * m / n, 1)}
                          for name, (m, n) in bands.items() if n},
    }


def seed_list(text):
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="easy,realistic,hard")
    ap.add_argument("--seeds", type=seed_list, default=seed_list("101-105"))
    ap.add_argument("--fovs", type=int, default=4, help="FOVs per seed")
    ap.add_argument("--runs", type=int, default=3, help="runs of each FOV for its median time")
    ap.add_argument("--recipe", default=os.path.join(REPO, "examples", "recipes", "iss_numpy.py"))
    args = ap.parse_args(argv)
    recipe = load_recipe(args.recipe)
    root = tempfile.mkdtemp(prefix="recipe-accuracy-")
    try:
        levels = {level: run_level(recipe, level, args.seeds, args.fovs, args.runs, root)
                  for level in args.levels.split(",")}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({
        "benchmark": "recipe-accuracy",
        "recipe": os.path.relpath(os.path.abspath(args.recipe), REPO),
        "seeds": args.seeds,
        "match_px": MATCH_PX,
        "runs": args.runs,
        "levels": levels,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "mem_gb": mem_total_gb(),
        "os": platform.platform(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
