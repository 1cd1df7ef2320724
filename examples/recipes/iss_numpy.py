"""ISS recipe using only numpy / scipy / scikit-image (no starfish needed).

Same steps as starfish's documented ISS pipeline, implemented directly:

1. read the FOV's primary tiles (r, c, z, y, x) and its "dots" anchor image from the
   SpaceTx experiment (local path, file://, s3:// or https:// via starfish_io);
2. register every round to the anchor (dots; round 0 if there is no dots image) by
   phase cross-correlation of the round's max projection over channels and z;
3. white top-hat filter (removes the smooth background);
4. find spots on the filtered anchor: Gaussian smoothing + peak_local_max with a
   robust (median + k * MAD) threshold;
5. decode per round by max channel, look the code up in the codebook; quality is the
   mean over rounds of max-channel / sum-of-channels (1 - starfish's distance).

process_fov(fov_index, experiment_url) returns a list of dicts with x, y, z, target,
quality — one per decoded spot (spots whose code is not in the codebook are dropped).
"""
import io
import json
import os
import sys

import numpy as np
from scipy import ndimage as ndi

try:
    import starfish_io as sio
except ImportError:  # running from the repository (not inside the process-fov image)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "..", "containers", "common"))
    import starfish_io as sio

TOPHAT_RADIUS = 5       # px; larger than a spot, smaller than background structure
SPOT_SIGMA = 1.0        # px; smoothing before peak finding
MIN_DISTANCE = 3        # px between spots
THRESHOLD_MADS = 8.0    # spot threshold = median + k * 1.4826 * MAD of the filtered anchor
MIN_QUALITY = 0.0       # drop spots with a lower decoding quality


def _read_json(url):
    return json.loads(sio.read_text(url))


def _read_tile(url):
    data = sio.read_bytes(url)
    try:
        import tifffile
        img = tifffile.imread(io.BytesIO(data))
    except ImportError:
        from PIL import Image
        img = np.asarray(Image.open(io.BytesIO(data)))
    img = np.asarray(img)
    if img.dtype.kind == "u":
        return img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    if img.dtype.kind == "i":
        return img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    return img.astype(np.float32)


def load_stack(tileset_url):
    """Tile set JSON -> float32 array (r, c, z, y, x) in [0, 1]."""
    ts = _read_json(tileset_url)
    base = sio.dirname(tileset_url)
    tiles = ts["tiles"]
    if not tiles:
        raise ValueError("tile set %s has no tiles" % tileset_url)
    R = 1 + max(int(t["indices"].get("r", 0)) for t in tiles)
    C = 1 + max(int(t["indices"].get("c", 0)) for t in tiles)
    Z = 1 + max(int(t["indices"].get("z", 0)) for t in tiles)
    stack = None
    for t in tiles:
        img = _read_tile(sio.join(base, t["file"]))
        if img.ndim != 2:
            img = img.reshape(img.shape[-2:])
        if stack is None:
            stack = np.zeros((R, C, Z) + img.shape, dtype=np.float32)
        i = t["indices"]
        stack[int(i.get("r", 0)), int(i.get("c", 0)), int(i.get("z", 0))] = img
    return stack


def load_fov(experiment_url, fov_index):
    exp = _read_json(experiment_url)
    base = sio.dirname(experiment_url)
    name = "fov_%03d" % int(fov_index)
    stacks = {}
    for image in ("primary", "dots"):
        if image not in exp["images"]:
            continue
        manifest_url = sio.join(base, exp["images"][image])
        manifest = _read_json(manifest_url)
        if name not in manifest["contents"]:
            raise KeyError("%s is not in the %s image manifest %s" % (name, image, manifest_url))
        stacks[image] = load_stack(sio.join(sio.dirname(manifest_url), manifest["contents"][name]))
    codebook = _read_json(sio.join(base, exp["codebook"]))
    return stacks["primary"], stacks.get("dots"), codebook


def codebook_lookup(codebook, rounds):
    """{(c_round0, c_round1, ...): target} for ISS-style (one channel per round) codes."""
    table = {}
    for m in codebook["mappings"]:
        code = [None] * rounds
        for entry in m["codeword"]:
            if float(entry.get("v", 1)) > 0:
                code[int(entry["r"])] = int(entry["c"])
        if None in code:
            continue  # not a one-channel-per-round code: this recipe cannot decode it
        table[tuple(code)] = m["target"]
    if not table:
        raise ValueError("codebook has no one-channel-per-round codes (not an ISS codebook?)")
    return table


def register(primary, reference):
    """Shift every round so that its max projection lines up with ``reference`` (y, x)."""
    try:
        from skimage.registration import phase_cross_correlation
    except ImportError:  # scikit-image < 0.17 (e.g. older starfish images)
        from skimage.feature import register_translation as phase_cross_correlation
    out = np.empty_like(primary)
    shifts = []
    for r in range(primary.shape[0]):
        moving = primary[r].max(axis=(0, 1))
        shift = phase_cross_correlation(reference, moving, upsample_factor=10)[0]
        shifts.append(tuple(float(s) for s in shift))
        for c in range(primary.shape[1]):
            for z in range(primary.shape[2]):
                out[r, c, z] = ndi.shift(primary[r, c, z], shift, order=1, mode="nearest")
    return out, shifts


def white_tophat(img, radius=TOPHAT_RADIUS):
    from skimage.morphology import disk
    return ndi.white_tophat(img, footprint=disk(radius))


def find_spots(anchor):
    """(y, x) peak coordinates on a filtered 2-D anchor image."""
    from skimage.feature import peak_local_max
    smooth = ndi.gaussian_filter(anchor, SPOT_SIGMA)
    med = float(np.median(smooth))
    mad = float(np.median(np.abs(smooth - med))) * 1.4826
    threshold = med + THRESHOLD_MADS * max(mad, 1e-6)
    peaks = peak_local_max(smooth, min_distance=MIN_DISTANCE, threshold_abs=threshold,
                           exclude_border=False)
    return peaks, smooth


def _subpixel(img, y, x):
    """Centroid refinement in a 3x3 window."""
    h, w = img.shape
    y0, y1, x0, x1 = max(0, y - 1), min(h, y + 2), max(0, x - 1), min(w, x + 2)
    win = np.clip(img[y0:y1, x0:x1], 0, None)
    s = float(win.sum())
    if s <= 0:
        return float(y), float(x)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return float((yy * win).sum() / s), float((xx * win).sum() / s)


def process_fov(fov_index, experiment_url):
    primary, dots, codebook = load_fov(experiment_url, fov_index)
    R, C, Z = primary.shape[:3]
    lookup = codebook_lookup(codebook, R)

    reference = dots.max(axis=(0, 1, 2)) if dots is not None else primary[0].max(axis=(0, 1))
    registered, shifts = register(primary, reference)
    print("iss_numpy: FOV %d round shifts (dy, dx): %s"
          % (fov_index, ", ".join("(%.1f, %.1f)" % s for s in shifts)))

    filtered = np.empty_like(registered)
    for r in range(R):
        for c in range(C):
            for z in range(Z):
                filtered[r, c, z] = white_tophat(registered[r, c, z])
    anchor = white_tophat(reference) if dots is not None else filtered[0].max(axis=(0, 1))
    peaks, smooth_anchor = find_spots(anchor)

    # per-spot intensity: Gaussian-smoothed value at the spot, per round and channel
    smoothed = np.empty((R, C) + reference.shape, dtype=np.float32)
    for r in range(R):
        for c in range(C):
            smoothed[r, c] = ndi.gaussian_filter(filtered[r, c].max(axis=0), SPOT_SIGMA)
    zmax = filtered.max(axis=(0, 1)).argmax(axis=0)  # best z plane per pixel

    spots = []
    for y, x in peaks:
        traces = smoothed[:, :, y, x]            # (R, C)
        code = tuple(int(c) for c in traces.argmax(axis=1))
        target = lookup.get(code)
        if target is None:
            continue
        sums = np.clip(traces, 0, None).sum(axis=1)
        maxes = traces.max(axis=1)
        quality = float(np.mean(np.where(sums > 0, maxes / np.maximum(sums, 1e-12), 0.0)))
        if quality < MIN_QUALITY:
            continue
        sy, sx = _subpixel(smooth_anchor, int(y), int(x))
        spots.append({"x": sx, "y": sy, "z": int(zmax[y, x]), "target": target, "quality": quality})
    print("iss_numpy: FOV %d: %d peaks, %d decoded" % (fov_index, len(peaks), len(spots)))
    return spots
