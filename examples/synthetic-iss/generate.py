#!/usr/bin/env python3
"""Deterministic generator of a small synthetic ISS-like SpaceTx experiment.

    /usr/bin/python3 examples/synthetic-iss/generate.py --out DIR [--fovs 4] [--seed 0]
        [--level easy|realistic|hard] [--empty-fovs 1,3] [--tile-format TIFF|PNG|NUMPY]

or, from Python, ``generate(out, fovs=4, seed=0, level="easy")``.

Writes a SpaceTx (format 5.0.0) experiment into DIR:

* experiment.json           images primary / nuclei / dots + codebook.json
* primary_image.json, nuclei.json, dots.json   image manifests (fov_000, fov_001, ...)
* <image>-fov_NNN.json      per-FOV tile sets
* <image>-fov_NNN-rR-cC-zZ.tiff   16-bit tiles (256 x 256 by default; .png or .npy with
                            --tile-format PNG or NUMPY, the SpaceTx ImageFormat names)
* codebook.json             ISS-style: each gene lights exactly one channel per round
* ground_truth.csv          fov,x,y,target (x, y in pixels of the reference (dots) frame);
                            the realistic and hard levels add each spot's snr
* ground_truth_shifts.csv   (realistic and hard) fov,round,dx,dy: where the sample sits in
                            each round's tiles relative to the dots frame
* ground_truth_cells.csv    (realistic and hard) fov,x,y,sigma_x,sigma_y,peak: the
                            autofluorescent cells, in the dots frame, peak in channel 0 at gain 1

Levels (see README.md for the definitions):

* easy (the default, unchanged): bright spots, round 0 unshifted, 6 % crosstalk, equal gains.
* realistic: spot SNR around 12, every round (round 0 too) shifted up to 4 px from the
  anchor, 12 % crosstalk into each neighbouring channel, unequal channel gains,
  autofluorescent cells in every channel, spots up to and across the tile edges.
* hard: as realistic with SNR around 4 and 25 % crosstalk.

``empty_fovs`` lists FOVs without tissue (no spots, no cells: background and noise only).
Needs numpy and tifffile (Pillow for PNG); runs in a few seconds.
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

# SpaceTx ImageFormat name -> file extension (slicedimage/_formats.py: TIFF "tiff", PNG "png",
# NUMPY "npy"; the real loader reads the tile's "tile_format", then the tile set's default)
TILE_EXTENSIONS = {"TIFF": "tiff", "PNG": "png", "NUMPY": "npy"}

# The difficulty levels other than easy. SNR: a spot's peak amplitude above the background
# in the channel it lights (with that channel's gain), averaged over rounds, divided by the
# sigma of the pixel noise. Drawn per spot, log-normal around the level's median.
LEVELS = {
    "realistic": {"snr": 12.0, "crosstalk": 0.12, "max_shift": 4.0},
    "hard": {"snr": 4.0, "crosstalk": 0.25, "max_shift": 4.0},
}
LEVEL_NAMES = ("easy",) + tuple(sorted(LEVELS))
NOISE_SIGMA = 0.01         # pixel noise of the realistic and hard levels (fraction of full scale)
SNR_SPREAD = 0.4           # sigma of log(SNR) between spots
ROUND_JITTER = (0.8, 1.2)  # a spot's brightness from round to round (chemistry, focus)
GAIN_STEPS = (0.6, 0.85, 1.15, 1.4)  # unequal channel gains, shuffled per experiment
AF_SPECTRUM = (1.0, 0.8, 0.6, 0.45)  # autofluorescence falls off towards the red channels
AF_CELLS = 8               # autofluorescent cells per FOV
IN_CELLS = 0.7             # share of the spots that lie in a cell
MIN_SPOT_DIST = 5.0        # px between spot centres
AF_SNR = (8.0, 20.0)       # their peak over the noise sigma (in channel 0, gain 1)


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


def _place_spots(n, size, margin, min_dist, rng, extent=None):
    """Up to n points at least min_dist apart, uniform in [margin, extent - margin]^2
    (extent defaults to size)."""
    hi = (size if extent is None else extent) - margin
    pts = []
    tries = 0
    while len(pts) < n and tries < n * 200:
        tries += 1
        p = rng.uniform(margin, hi, size=2)
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


def _encode(img16, tile_format):
    """The bytes of one tile file, as the real loader's reader for that format expects."""
    buf = io.BytesIO()
    if tile_format == "TIFF":
        import tifffile
        tifffile.imwrite(buf, img16)
    elif tile_format == "PNG":
        from PIL import Image
        Image.fromarray(img16).save(buf, format="PNG")  # 16-bit greyscale
    elif tile_format == "NUMPY":
        np.save(buf, img16)  # read back with numpy.load, as slicedimage does
    else:
        raise ValueError("tile format must be one of %s, got %r"
                         % (", ".join(TILE_EXTENSIONS), tile_format))
    return buf.getvalue()


def _write_tile(out, stem, img16, tile_format):
    """Write ``stem``.<ext>; returns (file name, sha256 of its bytes)."""
    fname = "%s.%s" % (stem, TILE_EXTENSIONS[tile_format])
    data = _encode(img16, tile_format)
    with open(os.path.join(out, fname), "wb") as fh:
        fh.write(data)
    return fname, hashlib.sha256(data).hexdigest()


def _tileset(tiles, rounds, channels, zplanes, tile_format="TIFF"):
    return {
        "version": "0.1.0",
        "dimensions": ["r", "c", "z", "xc", "yc", "zc"],
        "shape": {"r": rounds, "c": channels, "z": zplanes},
        "default_tile_format": tile_format,
        "extras": {},
        "tiles": tiles,
    }


def _tile_entry(fname, r, c, z, size, fov_origin, sha, tile_format="TIFF"):
    x0, y0 = fov_origin
    return {
        "coordinates": {
            "xc": [x0, x0 + size * PIXEL_UM],
            "yc": [y0, y0 + size * PIXEL_UM],
            "zc": [0.0, 0.0001],
        },
        "indices": {"r": r, "c": c, "z": z},
        "file": fname,
        "tile_format": tile_format,
        "tile_shape": {"y": size, "x": size},
        "sha256": sha,
        "extras": {},
    }


class Fov(object):
    """One FOV's images (floats, full scale 1.0) and ground truth, before writing."""

    def __init__(self):
        self.primary = {}  # (r, c) -> image
        self.dots = None
        self.nuclei = None
        self.truth = []    # (x, y, gene index, snr or None)
        self.shifts = []   # per round (dx, dy) of the sample in that round's tiles
        self.cells = []    # autofluorescent cells (x, y, sigma x, sigma y, peak) in the dots frame


def _easy_fov(rng, codes, p):
    """The original generator, draw for draw (the easy level must stay byte-identical)."""
    fov = Fov()
    size, sigma, noise, rounds, channels = p["size"], p["sigma"], p["noise"], p["rounds"], p["channels"]
    shape = (size, size)
    margin = 3 * sigma + p["max_shift"] + 4
    pts = _place_spots(p["spots_per_fov"], size, margin, 7.0, rng)
    n = len(pts)
    xs, ys = pts[:, 0], pts[:, 1]
    gene_idx = rng.integers(0, len(codes), size=n)
    amps = rng.uniform(0.5, 0.9, size=n)
    fov.truth = [(x, y, gi, None) for (x, y), gi in zip(pts, gene_idx)]
    fov.shifts = [(0.0, 0.0)] + [tuple(rng.uniform(-p["max_shift"], p["max_shift"], size=2))
                                 for _ in range(rounds - 1)]
    for r in range(rounds):
        dx, dy = fov.shifts[r]
        for c in range(channels):
            on = np.array([codes[gi][r] == c for gi in gene_idx])
            # per-round brightness jitter; faint crosstalk into the other channels
            a = np.where(on, amps * rng.uniform(0.8, 1.1, size=n), 0.06 * amps)
            img = _background(shape, rng) + _render(shape, xs + dx, ys + dy, a, sigma)
            img += rng.normal(0.0, noise, size=shape)
            fov.primary[(r, c)] = img
    # anchor ("dots"): every spot, in the reference frame
    fov.dots = _background(shape, rng) + _render(shape, xs, ys, amps, sigma)
    fov.dots += rng.normal(0.0, noise, size=shape)
    fov.nuclei = _nuclei(rng, size, noise)
    return fov


def _nuclei(rng, size, noise):
    """A few big soft blobs."""
    k = 6
    nx, ny = rng.uniform(20, size - 20, size=k), rng.uniform(20, size - 20, size=k)
    nuc = _render((size, size), nx, ny, rng.uniform(0.3, 0.6, size=k), 12.0)
    return nuc + rng.normal(0.0, noise, size=(size, size))


def _crosstalk_matrix(channels, fraction):
    """M[c, k]: how much of dye k's light channel c records (fraction into each neighbour)."""
    m = np.eye(channels)
    for k in range(channels):
        for c in (k - 1, k + 1):
            if 0 <= c < channels:
                m[c, k] = fraction
    return m


def _af_cells(rng, size, pad, noise):
    """Autofluorescent cells: broad elliptical blobs (x, y, sx, sy, peak)."""
    cells = []
    for _ in range(AF_CELLS):
        x, y = rng.uniform(-pad, size + pad, size=2)
        sx, sy = rng.uniform(4.0, 8.0, size=2)
        cells.append((x, y, sx, sy, rng.uniform(*AF_SNR) * noise))
    return cells


def _place_in_cells(n, cells, extent, pad, rng):
    """n spots at least MIN_SPOT_DIST apart, IN_CELLS of them in the cells (amplicons sit in
    the cytoplasm, on top of its autofluorescence), the rest anywhere; frame of the tile."""
    pts = []
    tries = 0
    while len(pts) < n and tries < n * 200:
        tries += 1
        if len(pts) < IN_CELLS * n:
            x, y, sx, sy, _ = cells[int(rng.integers(0, len(cells)))]
            p = np.array([x, y]) + rng.normal(0.0, 1.0, size=2) * [1.5 * sx, 1.5 * sy]
            if not (-pad <= p[0] < extent - pad and -pad <= p[1] < extent - pad):
                continue
        else:
            p = rng.uniform(-pad, extent - pad, size=2)
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= MIN_SPOT_DIST ** 2 for q in pts):
            pts.append(p)
    return np.array(pts, dtype=np.float64).reshape(-1, 2)


def _render_cells(shape, cells, dx, dy, scale):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros(shape)
    for x, y, sx, sy, peak in cells:
        img += scale * peak * np.exp(-((xx - x - dx) ** 2 / (2 * sx ** 2) + (yy - y - dy) ** 2 / (2 * sy ** 2)))
    return img


def _level_fov(rng, codes, p, gains, empty):
    """One FOV of the realistic or hard level (see LEVELS and the README)."""
    fov = Fov()
    size, sigma, noise, rounds, channels = p["size"], p["sigma"], NOISE_SIGMA, p["rounds"], p["channels"]
    shape = (size, size)
    level = LEVELS[p["level"]]
    max_shift = level["max_shift"]
    # every round sits somewhere else, round 0 included: the dots image is the only reference
    fov.shifts = [tuple(rng.uniform(-max_shift, max_shift, size=2)) for _ in range(rounds)]
    # the sample extends beyond the tile: spots and cells up to and across its edges
    pad = int(np.ceil(max_shift + 4 * sigma))
    extent = size + 2 * pad
    if empty:
        pts, cells = np.zeros((0, 2)), []
    else:
        n = int(round(p["spots_per_fov"] * (extent / float(size)) ** 2))
        cells = _af_cells(rng, size, pad, noise)
        pts = _place_in_cells(n, cells, extent, pad, rng)
    fov.cells = cells
    n = len(pts)
    xs, ys = pts[:, 0], pts[:, 1]
    gene_idx = rng.integers(0, len(codes), size=n)
    base = noise * level["snr"] * np.exp(rng.normal(0.0, SNR_SPREAD, size=n))
    jitter = rng.uniform(ROUND_JITTER[0], ROUND_JITTER[1], size=(rounds, n))
    mix = _crosstalk_matrix(channels, level["crosstalk"])
    on_gain = np.zeros(n)
    for r in range(rounds):
        dx, dy = fov.shifts[r]
        dye = np.zeros((channels, n))  # light each dye emits per spot, before the optics
        for i, gi in enumerate(gene_idx):
            dye[codes[gi][r], i] = base[i] * jitter[r, i]
            on_gain[i] += gains[codes[gi][r]] * jitter[r, i] / rounds
        for c in range(channels):
            a = gains[c] * mix[c].dot(dye)
            img = _background(shape, rng) + _render(shape, xs + dx, ys + dy, a, sigma)
            img += _render_cells(shape, cells, dx, dy, gains[c] * AF_SPECTRUM[c % len(AF_SPECTRUM)])
            img += rng.normal(0.0, noise, size=shape)
            fov.primary[(r, c)] = img
    snr = base * on_gain / noise
    # the truth is the spots centred on the tile's pixels (pixel i covers i - 0.5 to i + 0.5)
    inside = (xs >= -0.5) & (xs <= size - 0.5) & (ys >= -0.5) & (ys <= size - 0.5)
    fov.truth = [(xs[i], ys[i], gene_idx[i], snr[i]) for i in np.flatnonzero(inside)]
    # anchor: every amplicon at its mean brightness, the cells too (same optics, no shift)
    fov.dots = _background(shape, rng) + _render(shape, xs, ys, base, sigma)
    fov.dots += _render_cells(shape, cells, 0.0, 0.0, 1.0) + rng.normal(0.0, noise, size=shape)
    fov.nuclei = _nuclei(rng, size, noise) if not empty else rng.normal(0.0, noise, size=shape) + 0.05
    return fov


def _write_fov(out, name, f, fov, p, manifests, tile_format):
    size, rounds, channels = p["size"], p["rounds"], p["channels"]
    origin = (float(f % 8) * size * PIXEL_UM, float(f // 8) * size * PIXEL_UM)
    prim_tiles = []
    for r in range(rounds):
        for c in range(channels):
            fname, sha = _write_tile(out, "primary-%s-r%d-c%d-z0" % (name, r, c),
                                     _to_uint16(fov.primary[(r, c)]), tile_format)
            prim_tiles.append(_tile_entry(fname, r, c, 0, size, origin, sha, tile_format))
    with open(os.path.join(out, "primary-%s.json" % name), "w") as fh:
        json.dump(_tileset(prim_tiles, rounds, channels, 1, tile_format), fh, indent=1)
    manifests["primary"][name] = "primary-%s.json" % name
    for image, img in (("dots", fov.dots), ("nuclei", fov.nuclei)):
        fname, sha = _write_tile(out, "%s-%s-r0-c0-z0" % (image, name), _to_uint16(img), tile_format)
        tiles = [_tile_entry(fname, 0, 0, 0, size, origin, sha, tile_format)]
        with open(os.path.join(out, "%s-%s.json" % (image, name)), "w") as fh:
            json.dump(_tileset(tiles, 1, 1, 1, tile_format), fh, indent=1)
        manifests[image][name] = "%s-%s.json" % (image, name)


def generate(out=DEFAULT_OUT, fovs=4, seed=0, rounds=4, channels=4, size=256,
             spots_per_fov=80, n_genes=12, max_shift=5.0, noise=0.02, sigma=1.4,
             level="easy", empty_fovs=(), tile_format="TIFF"):
    """Write the synthetic experiment into ``out``; returns the experiment.json path.

    ``max_shift`` and ``noise`` are the easy level's; the other levels take theirs from
    LEVELS. ``empty_fovs``: indices of tissue-free FOVs (no spots, no cells)."""
    if fovs < 1:
        raise ValueError("fovs must be >= 1")
    if n_genes > len(GENES):
        raise ValueError("at most %d genes" % len(GENES))
    if level not in LEVEL_NAMES:
        raise ValueError("level must be one of %s, got %r" % (", ".join(LEVEL_NAMES), level))
    if tile_format not in TILE_EXTENSIONS:
        raise ValueError("tile format must be one of %s, got %r"
                         % (", ".join(TILE_EXTENSIONS), tile_format))
    empty = set(int(e) for e in empty_fovs)
    if any(e < 0 or e >= fovs for e in empty):
        raise ValueError("empty FOVs must be between 0 and %d, got %s" % (fovs - 1, sorted(empty)))
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    genes = GENES[:n_genes]
    codes = make_codebook(n_genes, rounds, channels, rng)
    gains = None if level == "easy" else \
        np.array([GAIN_STEPS[i % len(GAIN_STEPS)] for i in rng.permutation(channels)])
    params = {"size": size, "sigma": sigma, "noise": noise, "rounds": rounds, "channels": channels,
              "max_shift": max_shift, "spots_per_fov": spots_per_fov, "level": level}

    codebook = {
        "version": "0.0.0",
        "mappings": [
            {"codeword": [{"r": r, "c": int(code[r]), "v": 1} for r in range(rounds)], "target": g}
            for g, code in zip(genes, codes)
        ],
    }
    manifests = {"primary": {}, "nuclei": {}, "dots": {}}
    truth_rows, shift_rows, cell_rows = [], [], []
    for f in range(fovs):
        name = "fov_%03d" % f
        if level == "easy":
            fov = _easy_fov(rng, codes, params)
            if f in empty:  # the easy level's draws stay the same; the FOV loses its tissue
                fov = _emptied(fov, rng, params)
        else:
            fov = _level_fov(rng, codes, params, gains, f in empty)
        for x, y, gi, snr in fov.truth:
            row = (f, "%.2f" % x, "%.2f" % y, genes[gi])
            truth_rows.append(row if snr is None else row + ("%.2f" % snr,))
        shift_rows.extend((f, r, "%.3f" % dx, "%.3f" % dy) for r, (dx, dy) in enumerate(fov.shifts))
        cell_rows.extend((f,) + tuple("%.3f" % v for v in cell) for cell in fov.cells)
        _write_fov(out, name, f, fov, params, manifests, tile_format)

    files = {"primary": "primary_image.json", "nuclei": "nuclei.json", "dots": "dots.json"}
    for image, fname in files.items():
        with open(os.path.join(out, fname), "w") as fh:
            json.dump({"version": "0.1.0", "contents": manifests[image], "extras": {}}, fh, indent=1)
    with open(os.path.join(out, "codebook.json"), "w") as fh:
        json.dump(codebook, fh, indent=1)
    extras = {"synthetic": True, "generator": "examples/synthetic-iss/generate.py",
              "seed": seed, "fovs": fovs}
    if level != "easy":
        extras.update(level=level, channel_gains=[float(g) for g in gains])
    if empty:
        extras["empty_fovs"] = sorted(empty)
    experiment = {"version": "5.0.0", "images": files, "codebook": "codebook.json", "extras": extras}
    exp_path = os.path.join(out, "experiment.json")
    with open(exp_path, "w") as fh:
        json.dump(experiment, fh, indent=1)
    with open(os.path.join(out, "ground_truth.csv"), "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["fov", "x", "y", "target"] + ([] if level == "easy" else ["snr"]))
        w.writerows(truth_rows)
    if level != "easy":
        with open(os.path.join(out, "ground_truth_shifts.csv"), "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["fov", "round", "dx", "dy"])
            w.writerows(shift_rows)
        with open(os.path.join(out, "ground_truth_cells.csv"), "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["fov", "x", "y", "sigma_x", "sigma_y", "peak"])
            w.writerows(cell_rows)
    return exp_path


def _emptied(fov, rng, p):
    """An easy FOV without tissue: background and noise in every tile, no truth."""
    shape = (p["size"], p["size"])
    blank = Fov()
    blank.shifts = fov.shifts
    blank.primary = {k: _background(shape, rng) + rng.normal(0.0, p["noise"], size=shape)
                     for k in sorted(fov.primary)}
    blank.dots = _background(shape, rng) + rng.normal(0.0, p["noise"], size=shape)
    blank.nuclei = rng.normal(0.0, p["noise"], size=shape)
    return blank


def _fov_list(text):
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected FOV indices like 1,3, got %r" % text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--fovs", type=int, default=4, help="number of fields of view (default 4)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--level", choices=LEVEL_NAMES, default="easy",
                    help="difficulty (default easy; see examples/synthetic-iss/README.md)")
    ap.add_argument("--empty-fovs", type=_fov_list, default=[], metavar="1,3",
                    help="tissue-free FOVs: no spots, no cells (default none)")
    ap.add_argument("--tile-format", choices=sorted(TILE_EXTENSIONS), default="TIFF",
                    help="SpaceTx ImageFormat of the tiles (default TIFF)")
    args = ap.parse_args(argv)
    path = generate(args.out, fovs=args.fovs, seed=args.seed, level=args.level,
                    empty_fovs=args.empty_fovs, tile_format=args.tile_format)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
