#!/usr/bin/env python3
"""Deterministic generator of a small synthetic ISS-like SpaceTx experiment.

    /usr/bin/python3 examples/synthetic-iss/generate.py --out DIR [--fovs 4] [--seed 0]

or, from Python, ``generate(out, fovs=4, seed=0)``.

Writes a SpaceTx (format 5.0.0) experiment into DIR:

* experiment.json           images primary / nuclei / dots + codebook.json
* primary_image.json, nuclei.json, dots.json   image manifests (fov_000, fov_001, ...)
* <image>-fov_NNN.json      per-FOV tile sets
* <image>-fov_NNN-rR-cC-zZ.tiff   16-bit TIFF tiles (256 x 256 by default)
* codebook.json             ISS-style: each gene lights exactly one channel per round
* ground_truth.csv          fov,x,y,target  (x, y in pixels of the reference (dots) frame)

Each FOV has ``rounds`` x ``channels`` primary tiles with Gaussian spots, a small
per-round translation (a few px, round 0 unshifted) and noise; "dots" is the anchor
image showing every spot (unshifted, the registration reference); "nuclei" has a few
large blobs.  Needs numpy and tifffile only; runs in a few seconds.
"""
import argparse
import csv
import hashlib
import io
import json
import os
import sys

import numpy as np

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

GENES = ["ACTB", "GAPDH", "VIM", "KRT8", "ERBB2", "ESR1", "MKI67", "CD44",
         "EPCAM", "PTPRC", "COL1A1", "TFF1"]

PIXEL_UM = 0.1  # physical size of one pixel, for the tile coordinates


def make_codebook(n_genes, rounds, channels, rng, min_hamming=2):
    """Distinct codes (one channel per round), pairwise Hamming distance >= min_hamming."""
    codes = []
    attempts = 0
    while len(codes) < n_genes:
        attempts += 1
        if attempts > 100000:
            raise RuntimeError("could not build a codebook with these parameters")
        code = tuple(int(c) for c in rng.integers(0, channels, size=rounds))
        if all(sum(a != b for a, b in zip(code, other)) >= min_hamming for other in codes):
            codes.append(code)
    return codes


def _place_spots(n, size, margin, min_dist, rng):
    pts = []
    tries = 0
    while len(pts) < n and tries < n * 200:
        tries += 1
        p = rng.uniform(margin, size - margin, size=2)
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= min_dist ** 2 for q in pts):
            pts.append(p)
    return np.array(pts, dtype=np.float64).reshape(-1, 2)


def _render(shape, xs, ys, amps, sigma):
    """Sum of isotropic Gaussians (rendered locally, 4 sigma radius)."""
    img = np.zeros(shape, dtype=np.float64)
    h, w = shape
    r = int(np.ceil(4 * sigma))
    for x, y, a in zip(xs, ys, amps):
        x0, x1 = max(0, int(x) - r), min(w, int(x) + r + 2)
        y0, y1 = max(0, int(y) - r), min(h, int(y) + r + 2)
        if x0 >= x1 or y0 >= y1:
            continue
        gx = np.exp(-((np.arange(x0, x1) - x) ** 2) / (2 * sigma ** 2))
        gy = np.exp(-((np.arange(y0, y1) - y) ** 2) / (2 * sigma ** 2))
        img[y0:y1, x0:x1] += a * np.outer(gy, gx)
    return img


def _background(shape, rng, level=0.05):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / float(max(h, w))
    fx, fy, ph = rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
    return level * (1.0 + 0.5 * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph))


def _to_uint16(img):
    return (np.clip(img, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


def _write_tiff(path, img16):
    import tifffile
    buf = io.BytesIO()
    tifffile.imwrite(buf, img16)
    data = buf.getvalue()
    with open(path, "wb") as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


def _tileset(tiles, rounds, channels, zplanes):
    return {
        "version": "0.1.0",
        "dimensions": ["r", "c", "z", "xc", "yc", "zc"],
        "shape": {"r": rounds, "c": channels, "z": zplanes},
        "default_tile_format": "TIFF",
        "extras": {},
        "tiles": tiles,
    }


def _tile_entry(fname, r, c, z, size, fov_origin, sha):
    x0, y0 = fov_origin
    return {
        "coordinates": {
            "xc": [x0, x0 + size * PIXEL_UM],
            "yc": [y0, y0 + size * PIXEL_UM],
            "zc": [0.0, 0.0001],
        },
        "indices": {"r": r, "c": c, "z": z},
        "file": fname,
        "tile_format": "TIFF",
        "tile_shape": {"y": size, "x": size},
        "sha256": sha,
        "extras": {},
    }


def generate(out=DEFAULT_OUT, fovs=4, seed=0, rounds=4, channels=4, size=256,
             spots_per_fov=80, n_genes=12, max_shift=5.0, noise=0.02, sigma=1.4):
    """Write the synthetic experiment into ``out``; returns the experiment.json path."""
    if fovs < 1:
        raise ValueError("fovs must be >= 1")
    if n_genes > len(GENES):
        raise ValueError("at most %d genes" % len(GENES))
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    genes = GENES[:n_genes]
    codes = make_codebook(n_genes, rounds, channels, rng)

    codebook = {
        "version": "0.0.0",
        "mappings": [
            {"codeword": [{"r": r, "c": int(code[r]), "v": 1} for r in range(rounds)], "target": g}
            for g, code in zip(genes, codes)
        ],
    }
    manifests = {"primary": {}, "nuclei": {}, "dots": {}}
    truth_rows = []
    margin = 3 * sigma + max_shift + 4
    shape = (size, size)

    for f in range(fovs):
        name = "fov_%03d" % f
        origin = (float(f % 8) * size * PIXEL_UM, float(f // 8) * size * PIXEL_UM)
        pts = _place_spots(spots_per_fov, size, margin, 7.0, rng)
        n = len(pts)
        xs, ys = pts[:, 0], pts[:, 1]
        gene_idx = rng.integers(0, n_genes, size=n)
        amps = rng.uniform(0.5, 0.9, size=n)
        for (x, y), gi in zip(pts, gene_idx):
            truth_rows.append((f, "%.2f" % x, "%.2f" % y, genes[gi]))

        shifts = [(0.0, 0.0)] + [tuple(rng.uniform(-max_shift, max_shift, size=2))
                                 for _ in range(rounds - 1)]
        prim_tiles = []
        for r in range(rounds):
            dx, dy = shifts[r]
            for c in range(channels):
                on = np.array([codes[gi][r] == c for gi in gene_idx])
                # per-round brightness jitter; faint crosstalk into the other channels
                a = np.where(on, amps * rng.uniform(0.8, 1.1, size=n), 0.06 * amps)
                img = _background(shape, rng) + _render(shape, xs + dx, ys + dy, a, sigma)
                img += rng.normal(0.0, noise, size=shape)
                fname = "primary-%s-r%d-c%d-z0.tiff" % (name, r, c)
                sha = _write_tiff(os.path.join(out, fname), _to_uint16(img))
                prim_tiles.append(_tile_entry(fname, r, c, 0, size, origin, sha))
        with open(os.path.join(out, "primary-%s.json" % name), "w") as fh:
            json.dump(_tileset(prim_tiles, rounds, channels, 1), fh, indent=1)
        manifests["primary"][name] = "primary-%s.json" % name

        # anchor ("dots"): every spot, in the reference frame
        dots = _background(shape, rng) + _render(shape, xs, ys, amps, sigma)
        dots += rng.normal(0.0, noise, size=shape)
        fname = "dots-%s-r0-c0-z0.tiff" % name
        sha = _write_tiff(os.path.join(out, fname), _to_uint16(dots))
        with open(os.path.join(out, "dots-%s.json" % name), "w") as fh:
            json.dump(_tileset([_tile_entry(fname, 0, 0, 0, size, origin, sha)], 1, 1, 1), fh, indent=1)
        manifests["dots"][name] = "dots-%s.json" % name

        # nuclei: a few big soft blobs
        k = 6
        nx, ny = rng.uniform(20, size - 20, size=k), rng.uniform(20, size - 20, size=k)
        nuc = _render(shape, nx, ny, rng.uniform(0.3, 0.6, size=k), 12.0)
        nuc += rng.normal(0.0, noise, size=shape)
        fname = "nuclei-%s-r0-c0-z0.tiff" % name
        sha = _write_tiff(os.path.join(out, fname), _to_uint16(nuc))
        with open(os.path.join(out, "nuclei-%s.json" % name), "w") as fh:
            json.dump(_tileset([_tile_entry(fname, 0, 0, 0, size, origin, sha)], 1, 1, 1), fh, indent=1)
        manifests["nuclei"][name] = "nuclei-%s.json" % name

    files = {"primary": "primary_image.json", "nuclei": "nuclei.json", "dots": "dots.json"}
    for image, fname in files.items():
        with open(os.path.join(out, fname), "w") as fh:
            json.dump({"version": "0.1.0", "contents": manifests[image], "extras": {}}, fh, indent=1)
    with open(os.path.join(out, "codebook.json"), "w") as fh:
        json.dump(codebook, fh, indent=1)
    experiment = {
        "version": "5.0.0",
        "images": files,
        "codebook": "codebook.json",
        "extras": {"synthetic": True, "generator": "examples/synthetic-iss/generate.py",
                   "seed": seed, "fovs": fovs},
    }
    exp_path = os.path.join(out, "experiment.json")
    with open(exp_path, "w") as fh:
        json.dump(experiment, fh, indent=1)
    with open(os.path.join(out, "ground_truth.csv"), "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["fov", "x", "y", "target"])
        w.writerows(truth_rows)
    return exp_path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--fovs", type=int, default=4, help="number of fields of view (default 4)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = ap.parse_args(argv)
    path = generate(args.out, fovs=args.fovs, seed=args.seed)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
