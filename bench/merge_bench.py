#!/usr/bin/env python3
"""Benchmark merge-results: 10,000 per-FOV tables holding 1,000,000 spots in total.

    /usr/bin/python3 bench/merge_bench.py [--fovs 10000] [--spots 1000000] [--runs 5]

Creates the tables and their fov_NNN.metrics.json in a temporary directory (outputs/<run>/fovs,
as the FOV jobs write them),
runs containers/merge-results/merge_results.py as a subprocess ``--runs`` times (each run
rewrites outputs/<run>/results), checks the summary, and prints machine info + the median
wall-clock seconds as ONE JSON line at the end.
"""
import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MERGE = os.path.join(REPO, "containers", "merge-results", "merge_results.py")
RUN_ID = "261125-bench"
GENES = ["ACTB", "GAPDH", "VIM", "KRT8", "ERBB2", "ESR1", "MKI67", "CD44",
         "EPCAM", "PTPRC", "COL1A1", "TFF1", "SCUBE2", "BRCA1", "MYC", "CCND1"]


def make_tables(d, fovs, spots, seed=0):
    rnd = random.Random(seed)
    os.makedirs(d)
    base, extra = divmod(spots, fovs)
    for f in range(fovs):
        n = base + (1 if f < extra else 0)
        lines = ["fov,x,y,z,target,quality"]
        for _ in range(n):
            lines.append("%d,%.2f,%.2f,0,%s,%.3f" % (
                f, rnd.uniform(0, 2048), rnd.uniform(0, 2048), rnd.choice(GENES), rnd.random()))
        with open(os.path.join(d, "fov_%03d.csv" % f), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        with open(os.path.join(d, "fov_%03d.metrics.json" % f), "w") as fh:  # as process-fov writes it
            json.dump({"fov": f, "wall_seconds": round(rnd.uniform(10, 60), 3),
                       "cpu_seconds": round(rnd.uniform(8, 55), 3), "peak_rss_mib": round(rnd.uniform(300, 2000), 1)}, fh)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_gb():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024.0 / 1024.0, 1)
    except OSError:
        pass
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fovs", type=int, default=10000)
    ap.add_argument("--spots", type=int, default=1000000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)

    root = tempfile.mkdtemp(prefix="merge-bench-")
    try:
        fov_output = os.path.join(root, "outputs", RUN_ID, "fovs")
        results = os.path.join(root, "outputs", RUN_ID, "results")
        t0 = time.time()
        make_tables(fov_output, args.fovs, args.spots)
        gen_s = time.time() - t0
        print("generated %d tables / %d spots in %.1f s under %s" % (args.fovs, args.spots, gen_s, root),
              file=sys.stderr)
        env = dict(os.environ, STARFISH_RUN_ID=RUN_ID, STARFISH_FOVS="0-%d" % (args.fovs - 1),
                   STARFISH_FOV_OUTPUT=fov_output, STARFISH_RESULTS_OUTPUT=results)
        times = []
        for i in range(args.runs):
            t = time.time()
            proc = subprocess.run([sys.executable, MERGE], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, universal_newlines=True)
            dt = time.time() - t
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                raise SystemExit("merge-results failed with exit code %d" % proc.returncode)
            times.append(dt)
            print("run %d: %.2f s" % (i + 1, dt), file=sys.stderr)
        with open(os.path.join(results, "summary.json")) as fh:
            summary = json.load(fh)
        assert summary["spots_total"] == args.spots, summary["spots_total"]
        assert summary["fovs_processed"] == args.fovs, summary["fovs_processed"]
        assert not summary["fovs_missing"], summary["fovs_missing"][:10]
        assert summary["compute"]["fovs"] == args.fovs, summary.get("compute")
        result = {
            "benchmark": "merge-results",
            "fovs": args.fovs,
            "spots": args.spots,
        "metrics_files": args.fovs,
            "runs": len(times),
            "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3),
            "max_s": round(max(times), 3),
            "python": platform.python_version(),
            "python_executable": sys.executable,
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "mem_gb": mem_total_gb(),
            "os": platform.platform(),
        }
        print(json.dumps(result))
    finally:
        if args.keep:
            print("kept %s" % root, file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
