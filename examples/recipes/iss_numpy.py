"""ISS recipe using only numpy / scipy / scikit-image (no starfish needed).

The steps of starfish's ISS pipeline, made to adapt to the data in hand:

1. read the FOV's primary tiles (r, c, z, y, x) and its "dots" anchor image from the
   SpaceTx experiment as starfish reads it (containers/common/spacetx.py: versions 4.0.0 and
   5.0.0, nested collections, every kind of reference; local, s3:// or https:// through
   starfish_io); tiles may be TIFF, PNG or NUMPY (.npy), the format chosen as slicedimage
   does (the tile's "tile_format", then the tile set's default, then the extension);
2. estimate the pixel noise of every image (MAD of neighbour differences), so thresholds
   follow the data instead of a fixed intensity;
3. band-pass every image (difference of Gaussians: spot-sized structure stays, smooth
   background and most of the large autofluorescent cells go);
4. register EVERY round (round 0 included) to the anchor by cross-correlating the
   band-passed images: the anchor (dots; round 0 if there is none) is the only frame;
5. find candidate spots on the anchor: local maxima above DETECT_SIGMAS x its band-passed
   noise (lenient, for faint spots: step 8 drops the noise peaks), placed by a Gaussian fit;
   those centred outside the tile are the neighbouring FOV's;
6. read each spot's intensity in every round and channel at its registered position; a round
   where the spot lies outside the tile is unknown (spots at the edges);
7. learn from this FOV's bright spots how each dye looks in the channels (channel gains and
   crosstalk: the median colour of the spots assigned to each channel, refined a few times)
   and unmix every measurement with it;
8. decode against the codebook: for each codeword, the mean over known rounds of the share of
   the round's unmixed light that falls in the codeword's channel; the best codeword wins,
   and that mean is the spot's quality. Autofluorescence lights every channel, so it scores
   low and is dropped with everything below MIN_QUALITY; a noise peak is dropped because
   its codeword's channels hold less than MIN_SIGNAL_SIGMAS of light; a spot with unknown
   rounds is kept only if its known rounds single out one codeword.

process_fov(fov_index, experiment_url) returns a numpy structured array, one row per decoded
spot, with columns x, y (pixels of the anchor), z, target, quality and xc, yc, zc (physical
coordinates as starfish computes them from the tile coordinates); a FOV without spots gives
an empty array that still has these columns.
"""
import io
import json
import os
import sys

import numpy as np
from scipy import ndimage as ndi

try:
    import spacetx
    import starfish_io as sio
except ImportError:  # running from the repository (not inside the process-fov image)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "..", "containers", "common"))
    import spacetx
    import starfish_io as sio

DOG_SIGMA_SMALL = 1.0    # px; spot-sized band pass (the spots' sigma is about 1.4 px) ...
DOG_SIGMA_LARGE = 3.0    # px; ... minus the background smoothed over this
DOG_SIGMAS = (DOG_SIGMA_SMALL, DOG_SIGMA_LARGE)
DETECT_SIGMAS = 3.0      # anchor threshold, in sigmas of the band-passed noise (lenient:
                         # noise peaks fail MIN_SIGNAL_SIGMAS when decoded)
MIN_DISTANCE = 2         # px between spots (dense clusters in cells)
COLOUR_ROUNDS = 4        # refinements of the learned dye colours
COLOUR_SIGMAS = 8.0      # spots the colours are learned from: anchor above this many sigmas
MIN_COLOUR_SPOTS = 8     # fewer spots of a colour than this: keep that channel's default
MIN_QUALITY = 0.5        # mean share of a round's light in the codeword's channel
MIN_SIGNAL_SIGMAS = 5.0  # a spot's light in its codeword's channels, in noise sigmas
MIN_KNOWN_ROUNDS = 2     # rounds a spot must be inside the tile in to be decoded

# The settings above, as the run's summary.json records them ("recipe": {"parameters": ...}):
# merge-results reads this literal from the file without running it (containers/README.md,
# "Recipe parameters"), so it names the constants instead of repeating their values.
PARAMETERS = {
    "dog_sigma_small_px": DOG_SIGMA_SMALL,
    "dog_sigma_large_px": DOG_SIGMA_LARGE,
    "detect_sigmas": DETECT_SIGMAS,
    "min_distance_px": MIN_DISTANCE,
    "colour_rounds": COLOUR_ROUNDS,
    "colour_sigmas": COLOUR_SIGMAS,
    "min_colour_spots": MIN_COLOUR_SPOTS,
    "min_quality": MIN_QUALITY,
    "min_signal_sigmas": MIN_SIGNAL_SIGMAS,
    "min_known_rounds": MIN_KNOWN_ROUNDS,
}

SPOT_DTYPE = [("x", "f8"), ("y", "f8"), ("z", "i4"), ("target", "U64"), ("quality", "f8"),
              ("xc", "f8"), ("yc", "f8"), ("zc", "f8")]


def _read_json(url):
    return json.loads(sio.read_text(url))


# ---------------------------------------------------------------------------------------
# reading

def _decode_png(data):
    try:
        import imageio  # what the real loader uses; keeps 16-bit PNGs uint16
        reader = getattr(imageio, "v2", imageio)  # imageio >= 2.16 warns on the top-level imread
        return np.asarray(reader.imread(io.BytesIO(data), format="png"))
    except ImportError:
        from PIL import Image
        img = Image.open(io.BytesIO(data))
        arr = np.asarray(img)
        # Pillow opens 16-bit greyscale PNGs as 32-bit "I": PNG has at most 16 bits a sample
        return arr.astype(np.uint16) if img.mode.startswith("I") else arr


def _decode_tiff(data):
    try:
        import tifffile
        return np.asarray(tifffile.imread(io.BytesIO(data)))
    except ImportError:
        from PIL import Image
        return np.asarray(Image.open(io.BytesIO(data)))


def _decode(data, fmt):
    if fmt == "NUMPY":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if fmt == "PNG":
        return _decode_png(data)
    return _decode_tiff(data)


def read_tile(url, fmt):
    """One tile -> float32 2-D array, integer types scaled to [0, 1]. A tile that does not decode
    is named (one corrupt file among a FOV's dozens is otherwise "not a TIFF file")."""
    data = sio.read_bytes(url)
    try:
        img = _decode(data, fmt)
    except MemoryError:
        raise
    except Exception as exc:
        raise ValueError("tile %s is not a readable %s image (%s: %s)" % (url, fmt, type(exc).__name__, exc))
    if img.dtype.kind in "ui":
        return img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    return img.astype(np.float32)


def load_stack(tileset_location, tiles):
    """One image type's tile set for the FOV -> (float32 array (r, c, z, y, x), the
    coordinates of its first tile). ``tiles`` are spacetx.Tile: where each tile is read from
    and its format, as slicedimage decides it."""
    entries = _read_json(tileset_location)["tiles"]
    if not tiles:
        raise ValueError("tile set %s has no tiles" % tileset_location)
    indices = [entries[t.position].get("indices", {}) for t in tiles]
    R, C, Z = (1 + max(int(i.get(axis, 0)) for i in indices) for axis in ("r", "c", "z"))
    stack = None
    for t, i in zip(tiles, indices):
        img = read_tile(t.url, t.tile_format)
        if img.ndim != 2:
            img = img.reshape(img.shape[-2:])
        if stack is None:
            stack = np.zeros((R, C, Z) + img.shape, dtype=np.float32)
        stack[int(i.get("r", 0)), int(i.get("c", 0)), int(i.get("z", 0))] = img
    return stack, entries[tiles[0].position].get("coordinates", {})


def load_fov(experiment_url, fov_index):
    """(primary (r, c, z, y, x), dots or None, codebook, its URL, the anchor's tile
    coordinates), read as starfish reads the experiment (spacetx.check_fov: versions 4.0.0
    and 5.0.0, nested collections, relative, absolute and file:// references, fov_7 /
    fov_007 / fov_0007)."""
    source = spacetx.check_fov(experiment_url, fov_index)
    primary, coords = load_stack(*source.images["primary"])
    dots = None
    if "dots" in source.images:
        dots, coords = load_stack(*source.images["dots"])
    return primary, dots, _read_json(source.codebook_url), source.codebook_url, coords


def codebook_codes(codebook, rounds, where="the codebook"):
    """(targets, codes array (n, rounds)) of the targets with exactly one channel in each
    round (ISS codes); other targets are left out. ``where`` names the codebook in errors."""
    targets, codes = [], []
    for m in codebook["mappings"]:
        lit = [(int(e["r"]), int(e["c"])) for e in m["codeword"] if float(e.get("v", 1)) > 0]
        if sorted(r for r, _ in lit) != list(range(rounds)):
            continue  # not one channel per round: this recipe cannot decode it
        targets.append(m["target"])
        codes.append([c for _, c in sorted(lit)])
    if not codes:
        raise ValueError('%s has no target with exactly one channel in each of the %d rounds; this '
                         'recipe decodes ISS codes, e.g. "codeword": [{"r": 0, "c": 2, "v": 1}, '
                         '{"r": 1, "c": 0, "v": 1}, ...]' % (where, rounds))
    return targets, np.array(codes, dtype=int)


# ---------------------------------------------------------------------------------------
# image statistics and filters

def noise_sigma(img):
    """Robust sigma of the pixel noise: the MAD of horizontal neighbour differences (smooth
    background cancels, sparse spots are outliers), / sqrt(2) for the difference. Images
    without noise (mostly equal neighbours: rendered, or clipped at zero) have a MAD of 0;
    then the plain standard deviation of the differences, so thresholds stay above zero."""
    d = np.diff(img.astype(np.float64), axis=-1).ravel()
    mad = 1.4826 * float(np.median(np.abs(d - np.median(d))))
    return max(mad if mad > 0 else float(np.std(d)), 1e-9) / np.sqrt(2.0)


def bandpass(img):
    # "nearest", not the default "reflect": a reflection mirrors a spot lying just outside
    # the tile into it (detect() still drops it, by a fit on the raw anchor)
    return (ndi.gaussian_filter(img, DOG_SIGMAS[0], mode="nearest")
            - ndi.gaussian_filter(img, DOG_SIGMAS[1], mode="nearest"))


def _bandpass_gain():
    """How much the band pass scales white noise's sigma (the L2 norm of its kernel)."""
    delta = np.zeros((41, 41))
    delta[20, 20] = 1.0
    return float(np.sqrt((bandpass(delta) ** 2).sum()))


BANDPASS_GAIN = _bandpass_gain()


def _window(shape):
    """A Hann window: without it the tile borders (a jump when the FFT wraps the image)
    correlate best at zero shift and win over the spots."""
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1]))


def _peak_offset(corr):
    """Sub-pixel (dy, dx) of the correlation peak: a parabola through it and its neighbours."""
    h, w = corr.shape
    py, px = np.unravel_index(int(np.argmax(corr)), corr.shape)
    out = []
    for p, n, axis in ((py, h, 0), (px, w, 1)):
        idx = [py, px]
        vals = []
        for d in (-1, 0, 1):
            idx[axis] = (p + d) % n
            vals.append(corr[idx[0], idx[1]])
        den = vals[0] - 2 * vals[1] + vals[2]
        frac = 0.5 * (vals[0] - vals[2]) / den if den < 0 else 0.0
        q = p + frac
        out.append(q - n if q > n / 2 else q)  # FFT indices wrap: large means negative
    return out[0], out[1]


def register(filtered, reference):
    """Per round, the (dy, dx) that moves the round onto ``reference``: the peak of the
    cross-correlation of the channel-summed band-passed round with the band-passed anchor.
    A spot at p in the anchor is at p - shift in the round."""
    win = _window(reference.shape)
    ref = np.fft.rfft2(reference * win)
    shifts = []
    for r in range(filtered.shape[0]):
        moving = np.fft.rfft2(filtered[r].sum(axis=0) * win)
        corr = np.fft.irfft2(ref * np.conj(moving), s=reference.shape)
        shifts.append(_peak_offset(corr))
    return shifts


def find_spots(anchor_bp, sigma):
    """(y, x) local maxima of the band-passed anchor above DETECT_SIGMAS x its noise."""
    from skimage.feature import peak_local_max
    return peak_local_max(anchor_bp, min_distance=MIN_DISTANCE, exclude_border=False,
                          threshold_abs=DETECT_SIGMAS * sigma * BANDPASS_GAIN)


def _gauss_centre(v0, v1, v2, at):
    """Centre of a Gaussian through values at pixels at, at+1, at+2 (None if not peaked)."""
    if min(v0, v1, v2) <= 0:
        return None
    l0, l1, l2 = np.log(v0), np.log(v1), np.log(v2)
    curvature = l0 - 2 * l1 + l2
    if curvature >= 0:
        return None
    return at + 0.5 - (l1 - l0) / curvature


def _refine_axis(line, p):
    """Sub-pixel position of the peak at index p of a 1-D profile. At the first or last
    pixel the fit is one-sided, so a spot centred outside the tile (whose tail makes the
    border pixel a maximum) lands outside it and is dropped."""
    n = len(line)
    if n < 3:
        return float(p)
    at = min(max(p - 1, 0), n - 3)
    c = _gauss_centre(line[at], line[at + 1], line[at + 2], at)
    if c is None and p in (0, n - 1):
        # only a tail at the border (it fades into the noise within 2 px): the spot is
        # centred beyond it; one centred on the border pixel is bright over 3 px and fits
        return -1.0 if p == 0 else float(n)
    if c is None:
        return float(p)
    beyond = (p == 0 and c < 0) or (p == n - 1 and c > n - 1)
    if abs(c - p) > 1.5 and not beyond:  # a poor fit inside the tile: keep the pixel
        return float(p)
    return float(c)


def refine(img, y, x):
    """Sub-pixel (y, x) of the peak at integer (y, x): a Gaussian fit along each axis."""
    return _refine_axis(img[:, x], y), _refine_axis(img[y, :], x)


EDGE_PX = 3  # peaks this close to the tile's edge are refined on the raw anchor


def refine_all(anchor_bp, anchor, peaks):
    """Sub-pixel positions (n, 2) of ``peaks``. Near an edge any filter invents the pixels
    beyond the tile (and "nearest" padding pulls the peak outwards), so there the fit uses
    the raw anchor minus its local background (a low percentile around the peak)."""
    h, w = anchor.shape
    out = np.zeros((len(peaks), 2))
    for i, (y, x) in enumerate(peaks):
        y, x = int(y), int(x)
        if EDGE_PX <= y < h - EDGE_PX and EDGE_PX <= x < w - EDGE_PX:
            out[i] = refine(anchor_bp, y, x)
            continue
        win = anchor[max(0, y - 6):y + 7, max(0, x - 6):x + 7]
        out[i] = refine(anchor - np.percentile(win, 20), y, x)
    return out


def measure(filtered, shifts, ys, xs):
    """Intensities (n, R, C) of each spot in every round and channel at its registered
    position, and a mask (n, R) of the rounds where that position is inside the tile."""
    R, C, h, w = filtered.shape
    n = len(ys)
    values = np.zeros((n, R, C))
    inside = np.zeros((n, R), dtype=bool)
    for r, (sy, sx) in enumerate(shifts):
        py, px = ys - sy, xs - sx
        inside[:, r] = (py >= -0.5) & (py <= h - 0.5) & (px >= -0.5) & (px <= w - 0.5)
        for c in range(C):
            values[:, r, c] = ndi.map_coordinates(filtered[r, c], [py, px], order=1, mode="nearest")
    return values, inside


# ---------------------------------------------------------------------------------------
# colours and decoding

def learn_colours(values, inside):
    """The C x C matrix whose column k is how a spot of dye k looks in the C channels (gains
    and crosstalk), learned as the median measurement of the spots assigned to k."""
    C = values.shape[2]
    v = values[inside]  # (m, C) measurements inside the tile
    v = v[v.max(axis=1) > 0] if len(v) else v
    scale = np.array([np.percentile(v[:, c], 95) if len(v) else 1.0 for c in range(C)])
    scale = np.where(scale > 0, scale, 1.0)
    colours = np.diag(scale)
    for _ in range(COLOUR_ROUNDS):
        assigned = unmix(v, colours).argmax(axis=1) if len(v) else np.zeros(0, int)
        new = colours.copy()
        for k in range(C):
            members = v[assigned == k]
            if len(members) >= MIN_COLOUR_SPOTS:
                col = np.median(members, axis=0)
                if col[k] > 0:
                    new[:, k] = col
        if np.linalg.cond(new) > 1e3:
            break  # two colours alike (e.g. mostly autofluorescence): keep the last good ones
        colours = new
    return colours


def unmix(v, colours):
    """Dye amounts of measurements ``v`` (..., C): solve colours . u = v."""
    return np.linalg.solve(colours, v.reshape(-1, v.shape[-1]).T).T.reshape(v.shape)


def decode(values, inside, colours, codes):
    """(best codeword index, quality) per spot."""
    u = np.clip(unmix(values, colours), 0.0, None)     # (n, R, C)
    total = u.sum(axis=2, keepdims=True)
    share = np.where(total > 0, u / np.maximum(total, 1e-12), 0.0)
    known = inside.astype(float)
    n_known = np.maximum(known.sum(axis=1), 1.0)
    R = values.shape[1]
    # score[i, w] = mean over known rounds r of share[i, r, codes[w, r]]
    score = np.zeros((values.shape[0], len(codes)))
    for r in range(R):
        score += share[:, r, codes[:, r]] * known[:, r:r + 1]
    score /= n_known[:, None]
    best = score.argmax(axis=1)
    quality = score[np.arange(len(values)), best]
    # a spot outside the tile in some rounds (at the edges) is decoded only if its known
    # rounds, at least MIN_KNOWN_ROUNDS, tell the best codeword apart from every other one
    same = (codes[None, :, :] == codes[best][:, None, :]) | ~inside[:, None, :]  # (n, W, R)
    unique = same.all(axis=2).sum(axis=1) == 1
    enough = inside.sum(axis=1) >= min(MIN_KNOWN_ROUNDS, R)
    return best, np.where(unique & enough, quality, 0.0)


def signal_sigmas(values, inside, codes, best, noise):
    """Evidence that a spot is there at all, per spot: its light in the best codeword's
    channels over the known rounds, in sigmas of those images' band-passed noise (a sum of
    n independent values over sqrt(n)). Shares alone cannot tell a noise peak from a spot."""
    n, R = inside.shape
    if n == 0:
        return np.zeros(0)
    chans = codes[best]                                    # (n, R)
    lit = values[np.arange(n)[:, None], np.arange(R)[None, :], chans]
    z = np.where(inside, lit / noise[np.arange(R)[None, :], chans], 0.0).sum(axis=1)
    return z / np.sqrt(np.maximum(inside.sum(axis=1), 1))


def image_noise(primary):
    """(R, C) sigma of each round's and channel's band-passed noise."""
    R, C = primary.shape[:2]
    return np.array([[noise_sigma(primary[r, c].max(axis=0)) * BANDPASS_GAIN for c in range(C)]
                     for r in range(R)])


# ---------------------------------------------------------------------------------------
# the recipe

def _physical(coords, x, y, shape):
    """Pixel -> physical coordinates, as starfish does: linspace(min, max, size) per axis,
    z at the middle of the tile's z range."""
    def axis(name, px, n):
        lo, hi = coords.get(name, [0.0, 0.0])[:2] if coords.get(name) else (0.0, 0.0)
        return lo + px * (hi - lo) / max(n - 1, 1)
    zr = coords.get("zc") or [0.0, 0.0]
    return axis("xc", x, shape[1]), axis("yc", y, shape[0]), (zr[0] + zr[-1]) / 2.0


def align(primary, dots):
    """(anchor, band-passed rounds (R, C, y, x), band-passed anchor, per-round shifts):
    the z max projections filtered, every round registered to the anchor."""
    R, C = primary.shape[:2]
    flat = primary.max(axis=2)  # (R, C, y, x): max projection over z
    anchor = dots.max(axis=(0, 1, 2)) if dots is not None else flat[0].max(axis=0)
    filtered = np.stack([[bandpass(flat[r, c]) for c in range(C)] for r in range(R)])
    anchor_bp = bandpass(anchor)
    return anchor, filtered, anchor_bp, register(filtered, anchor_bp)


def detect(anchor, anchor_bp, sigma):
    """Candidate spots of the anchor: (integer peaks (n, 2), sub-pixel (y, x) (n, 2), peak
    height in sigmas of the band-passed noise (n,)), without those centred outside the tile
    (a neighbouring FOV's spots whose tails reach into this one). The threshold is lenient:
    some candidates are noise, and decoding drops them."""
    peaks = find_spots(anchor_bp, sigma)
    subpix = refine_all(anchor_bp, anchor, peaks)
    h, w = anchor.shape
    within = ((subpix[:, 0] >= -0.5) & (subpix[:, 0] <= h - 0.5)
              & (subpix[:, 1] >= -0.5) & (subpix[:, 1] <= w - 0.5))
    peaks, subpix = peaks[within], subpix[within]
    return peaks, subpix, anchor_bp[peaks[:, 0], peaks[:, 1]] / (sigma * BANDPASS_GAIN)


def process_fov(fov_index, experiment_url):
    primary, dots, codebook, codebook_url, coords = load_fov(experiment_url, fov_index)
    R = primary.shape[0]
    targets, codes = codebook_codes(codebook, R, codebook_url)

    anchor, filtered, anchor_bp, shifts = align(primary, dots)
    sigma = noise_sigma(anchor)
    print("iss_numpy: FOV %d: anchor noise %.4g; round shifts (dy, dx): %s"
          % (fov_index, sigma, ", ".join("(%.1f, %.1f)" % s for s in shifts)))
    # into fov_quality.csv (via the FOV's metrics file): a large shift explains a poor FOV
    sio.report_fov_facts(registration_shift_px=sio.registration_shift_px(shifts))

    peaks, subpix, height = detect(anchor, anchor_bp, sigma)
    values, inside = measure(filtered, shifts, subpix[:, 0], subpix[:, 1])
    # colours are learned from the clearly bright spots only: faint candidates are partly noise
    bright = height >= COLOUR_SIGMAS
    colours = learn_colours(values[bright], inside[bright])
    best, quality = decode(values, inside, colours, codes)
    evidence = signal_sigmas(values, inside, codes, best, image_noise(primary))
    zbest = primary.max(axis=(0, 1)).argmax(axis=0)  # best z plane per pixel

    keep = np.flatnonzero((quality >= MIN_QUALITY) & (evidence >= MIN_SIGNAL_SIGMAS))
    spots = np.zeros(len(keep), dtype=SPOT_DTYPE)
    for j, i in enumerate(keep):
        y, x = subpix[i]
        xc, yc, zc = _physical(coords, x, y, anchor.shape)
        spots[j] = (x, y, int(zbest[int(peaks[i][0]), int(peaks[i][1])]), targets[best[i]],
                    float(quality[i]), xc, yc, zc)
    print("iss_numpy: FOV %d: %d peaks, %d decoded" % (fov_index, len(peaks), len(spots)))
    return spots
