"""The synthetic generator's levels have the properties they claim, and the numpy ISS
recipe decodes them: all of the easy data, >= 95 % of the realistic data with <= 2 % false
positives (on a seed the recipe was not tuned on), empty FOVs, and every tile format."""
import csv
import hashlib
import json
import math
import os
import sys

import numpy as np
import pytest
import tifffile
from scipy.spatial import cKDTree

import generate
import iss_numpy
import starfish_io as sio
from conftest import NUMPY_RECIPE, PROCESS_FOV, RUN_ID, run_script

MATCH_PX = 2.0
HELD_OUT_SEED = 21  # the recipe's constants were chosen on seeds 1-6; this one was not looked at


# ---------------------------------------------------------------------------------------
# helpers: ground truth, matching, measuring the images independently of the generator

def load_truth(exp):
    with open(os.path.join(os.path.dirname(exp), "ground_truth.csv")) as fh:
        rows = list(csv.DictReader(fh))
    return [{"fov": int(r["fov"]), "x": float(r["x"]), "y": float(r["y"]), "target": r["target"],
             "snr": float(r["snr"]) if r.get("snr") else None} for r in rows]


def load_csv(exp, name):
    with open(os.path.join(os.path.dirname(exp), name)) as fh:
        return list(csv.DictReader(fh))


def score(spots, truth):
    """Greedy one-to-one matching (best quality first), same gene within MATCH_PX.
    Returns (true positives, false positives, indices of the matched truth spots)."""
    used = set()
    tp = fp = 0
    if not truth:
        return 0, len(spots), used
    gxy = np.array([[t["x"], t["y"]] for t in truth])
    tree = cKDTree(gxy)
    for s in sorted(spots, key=lambda s: -s["quality"]):
        hits = tree.query_ball_point([s["x"], s["y"]], MATCH_PX)
        hits = [i for i in sorted(hits, key=lambda i: np.hypot(*(gxy[i] - [s["x"], s["y"]])))
                if i not in used and truth[i]["target"] == s["target"]]
        if hits:
            used.add(hits[0])
            tp += 1
        else:
            fp += 1
    return tp, fp, used


def evaluate(exp, fovs):
    """Recall, false-positive rate and a printable report over ``fovs``."""
    truth = load_truth(exp)
    total_truth = total_tp = total_fp = 0
    report = []
    for fov in fovs:
        t = [r for r in truth if r["fov"] == fov]
        spots = iss_numpy.process_fov(fov, exp)
        tp, fp, _ = score(spots, t)
        report.append("FOV %d: truth %d, called %d, correct %d, false %d" % (fov, len(t), len(spots), tp, fp))
        total_truth, total_tp, total_fp = total_truth + len(t), total_tp + tp, total_fp + fp
    recall = total_tp / float(max(1, total_truth))
    fp_rate = total_fp / float(max(1, total_tp + total_fp))
    report.append("recall %.3f, false-positive rate %.3f" % (recall, fp_rate))
    print("\n".join(report))
    return recall, fp_rate, "\n".join(report)


def tile(exp, image, fov, r=0, c=0):
    return tifffile.imread(os.path.join(os.path.dirname(exp), "%s-fov_%03d-r%d-c%d-z0.tiff"
                                        % (image, fov, r, c))).astype(np.float64)


def pixel_noise(img):
    """Sigma of the pixel noise (MAD of neighbour differences / sqrt 2)."""
    return 1.4826 * np.median(np.abs(np.diff(img, axis=1))) / np.sqrt(2.0)


def spot_amplitude(img, x, y):
    """Pixel value at (x, y) over the median of a ring 5-8 px around it."""
    win = img[y - 8:y + 9, x - 8:x + 9]
    yy, xx = np.mgrid[-8:9, -8:9]
    return img[y, x] - np.median(win[np.hypot(yy, xx) >= 5])


def measured_spots(exp, fov):
    """Measured from the pixels: (per spot and round, the SNR in the lit channel; the light
    in the neighbouring channels over the lit one, gain-corrected, summed over spots). Spots within 8 px of an edge or on a cell are
    skipped."""
    extras = json.load(open(exp))["extras"]
    gains = extras["channel_gains"]
    codebook = json.load(open(os.path.join(os.path.dirname(exp), "codebook.json")))
    codes = {m["target"]: {e["r"]: e["c"] for e in m["codeword"]} for m in codebook["mappings"]}
    shifts = {int(s["round"]): (float(s["dx"]), float(s["dy"]))
              for s in load_csv(exp, "ground_truth_shifts.csv") if int(s["fov"]) == fov}
    cells = [c for c in load_csv(exp, "ground_truth_cells.csv") if int(c["fov"]) == fov]

    def off_cells(t):  # the cells' autofluorescence would add to every channel
        return all(np.hypot((t["x"] - float(c["x"])) / float(c["sigma_x"]),
                            (t["y"] - float(c["y"])) / float(c["sigma_y"])) > 3 for c in cells)
    snrs, crosstalk = [], []
    for r in range(4):
        imgs = [tile(exp, "primary", fov, r, c) for c in range(4)]
        dx, dy = shifts[r]
        for t in load_truth(exp):
            x, y = int(round(t["x"] + dx)), int(round(t["y"] + dy))
            if t["fov"] != fov or not (8 <= x < 248 and 8 <= y < 248) or not off_cells(t):
                continue
            c = codes[t["target"]][r]
            lit = spot_amplitude(imgs[c], x, y)
            snrs.append(lit / pixel_noise(imgs[c]))
            crosstalk += [(spot_amplitude(imgs[n], x, y) / gains[n], lit / gains[c])
                          for n in (c - 1, c + 1) if 0 <= n < 4]
    leaked, lit = np.array(crosstalk).T
    return np.array(snrs), leaked.sum() / lit.sum()


def measured_shift(exp, fov, r):
    """(dx, dy) of round r's tiles against the dots image: cross-correlation of the
    high-passed images (the smooth backgrounds differ from tile to tile)."""
    from scipy import ndimage as ndi
    from skimage.registration import phase_cross_correlation

    def high_pass(img):
        return ndi.gaussian_filter(img, 1.0) - ndi.gaussian_filter(img, 4.0)
    moving = high_pass(sum(tile(exp, "primary", fov, r, c) for c in range(4)))
    shift = phase_cross_correlation(high_pass(tile(exp, "dots", fov)), moving, upsample_factor=10,
                                    normalization=None)[0]
    return -shift[1], -shift[0]


# ---------------------------------------------------------------------------------------
# experiments (generated once per module)

@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    """Held-out seed; FOVs 0 and 1 with tissue, FOV 2 tissue-free."""
    out = tmp_path_factory.mktemp("realistic")
    return generate.generate(str(out), fovs=3, seed=HELD_OUT_SEED, level="realistic", empty_fovs=[2])


@pytest.fixture(scope="module")
def hard(tmp_path_factory):
    return generate.generate(str(tmp_path_factory.mktemp("hard")), fovs=2, seed=HELD_OUT_SEED, level="hard")


# ---------------------------------------------------------------------------------------
# the generator

def test_generator_layout(synthetic):
    d = os.path.dirname(synthetic)
    exp = json.load(open(synthetic))
    assert exp["version"] == "5.0.0"
    assert set(exp["images"]) == {"primary", "nuclei", "dots"}
    manifest = json.load(open(os.path.join(d, exp["images"]["primary"])))
    assert manifest["version"] == "0.1.0"
    assert sorted(manifest["contents"]) == ["fov_000", "fov_001", "fov_002", "fov_003"]
    tileset = json.load(open(os.path.join(d, manifest["contents"]["fov_001"])))
    assert len(tileset["tiles"]) == 16
    t = tileset["tiles"][0]
    assert set(t) >= {"file", "indices", "coordinates", "tile_shape", "sha256", "tile_format"}
    assert t["tile_format"] == "TIFF" and t["tile_shape"] == {"y": 256, "x": 256}
    with open(os.path.join(d, t["file"]), "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == t["sha256"]
    codebook = json.load(open(os.path.join(d, exp["codebook"])))
    assert 8 <= len(codebook["mappings"]) <= 16
    for m in codebook["mappings"]:
        assert sorted(e["r"] for e in m["codeword"]) == [0, 1, 2, 3]  # one channel per round


def test_easy_level_is_what_it_always_was(synthetic):
    """The default (easy) output did not change when the levels were added: the ground truth
    and the pixels of seed 0 hash as they did before (pixels, not file bytes, so a newer
    tifffile writing other metadata does not matter)."""
    with open(os.path.join(os.path.dirname(synthetic), "ground_truth.csv"), "rb") as fh:
        truth_digest = hashlib.sha256(fh.read()).hexdigest()
    pixels = hashlib.sha256()
    for r in range(4):
        for c in range(4):
            pixels.update(tile(synthetic, "primary", 0, r, c).astype(np.uint16).tobytes())
    pixels.update(tile(synthetic, "dots", 0).astype(np.uint16).tobytes())
    assert truth_digest == "b2c954deef595ac864be7cc191927d13e08603dda565559ae6fe5484044d0bbf"
    assert pixels.hexdigest() == "611592c01abfc3eb9d38b68d5e9ca40cfe837a6a143f51afd71ccac26b7fd863"


def test_generator_is_deterministic(tmp_path):
    a = generate.generate(str(tmp_path / "a"), fovs=1, seed=7, level="realistic")
    b = generate.generate(str(tmp_path / "b"), fovs=1, seed=7, level="realistic")
    for name in ("ground_truth.csv", "ground_truth_shifts.csv", "primary-fov_000.json", "codebook.json"):
        assert open(os.path.join(os.path.dirname(a), name)).read() == \
            open(os.path.join(os.path.dirname(b), name)).read()


def test_generator_refuses_unknown_level_and_format(tmp_path):
    with pytest.raises(ValueError, match="level must be one of easy, hard, realistic"):
        generate.generate(str(tmp_path), fovs=1, level="medium")
    with pytest.raises(ValueError, match="tile format must be one of TIFF, PNG, NUMPY"):
        generate.generate(str(tmp_path), fovs=1, tile_format="JPEG")


@pytest.mark.parametrize("level, snr_range, crosstalk", [("realistic", (10, 14), 0.12), ("hard", (3, 5), 0.25)])
def test_level_snr_and_crosstalk_measured_from_the_pixels(request, level, snr_range, crosstalk):
    """SNR = spot peak over the pixel-noise sigma, in the lit channel; crosstalk = the light
    of a spot in a neighbouring channel, corrected for the channel gains, over the lit one.
    Measured at whole pixels (so the SNR reads a little under the sub-pixel peak)."""
    exp = request.getfixturevalue(level)
    measured = [measured_spots(exp, fov) for fov in (0, 1)]
    snrs = np.concatenate([m[0] for m in measured])
    ratio = np.mean([m[1] for m in measured])
    print("%s: median measured SNR %.1f, crosstalk %.3f" % (level, np.median(snrs), ratio))
    assert snr_range[0] <= np.median(snrs) <= snr_range[1]
    assert abs(ratio / crosstalk - 1) < 0.2  # reads about 10 % low at whole pixels
    truth_snr = [t["snr"] for t in load_truth(exp) if t["fov"] in (0, 1)]
    assert snr_range[0] <= np.median(truth_snr) <= snr_range[1]


def test_realistic_level_shifts_every_round_including_round_0(realistic):
    stated = {(int(s["fov"]), int(s["round"])): (float(s["dx"]), float(s["dy"]))
              for s in load_csv(realistic, "ground_truth_shifts.csv")}
    for fov in (0, 1):
        for r in range(4):
            dx, dy = measured_shift(realistic, fov, r)
            assert abs(dx - stated[fov, r][0]) < 0.5 and abs(dy - stated[fov, r][1]) < 0.5
    assert all(abs(v) <= 4.0 for s in stated.values() for v in s)
    round0 = [max(abs(stated[f, 0][0]), abs(stated[f, 0][1])) for f in (0, 1)]
    assert max(round0) > 1.0, "round 0 should not sit on the anchor's frame"


def test_realistic_level_gains_cells_edges_and_empty_fovs(realistic):
    gains = json.load(open(realistic))["extras"]["channel_gains"]
    assert max(gains) / min(gains) > 2.0
    # autofluorescent cells light every channel of every round (and the anchor): at a cell's
    # centre each tile is brighter than on a ring well outside it (cells have sigma <= 8 px)
    cells = [c for c in load_csv(realistic, "ground_truth_cells.csv") if int(c["fov"]) == 0]
    shifts = {int(s["round"]): (float(s["dx"]), float(s["dy"]))
              for s in load_csv(realistic, "ground_truth_shifts.csv") if int(s["fov"]) == 0}
    inside = [c for c in cells if 28 <= float(c["x"]) < 228 and 28 <= float(c["y"]) < 228]
    assert inside, "expected a cell inside FOV 0"
    yy, xx = np.mgrid[-24:25, -24:25]
    ring = (np.hypot(yy, xx) >= 20) & (np.hypot(yy, xx) <= 24)
    for cell in inside:
        for r in range(4):
            x, y = int(round(float(cell["x"]) + shifts[r][0])), int(round(float(cell["y"]) + shifts[r][1]))
            for c in range(4):
                img = tile(realistic, "primary", 0, r, c)
                excess = img[y - 2:y + 3, x - 2:x + 3].mean() - np.median(img[y - 24:y + 25, x - 24:x + 25][ring])
                assert excess > pixel_noise(img), (cell, r, c)
        x, y = int(round(float(cell["x"]))), int(round(float(cell["y"])))
        dots = tile(realistic, "dots", 0)
        assert dots[y - 2:y + 3, x - 2:x + 3].mean() - np.median(dots[y - 24:y + 25, x - 24:x + 25][ring]) \
            > 3 * pixel_noise(dots)
    # spots up to the tile's edges
    truth = load_truth(realistic)
    assert any(min(t["x"], t["y"], 255 - t["x"], 255 - t["y"]) < 2.0 for t in truth)
    # the tissue-free FOV: no spots, no cells
    assert not [t for t in truth if t["fov"] == 2]
    assert not [c for c in load_csv(realistic, "ground_truth_cells.csv") if int(c["fov"]) == 2]


# ---------------------------------------------------------------------------------------
# the recipe

def test_numpy_recipe_decodes_easy_data(synthetic):
    recall, fp_rate, report = evaluate(synthetic, range(4))
    assert recall >= 0.95, report
    assert fp_rate <= 0.01, report


def test_numpy_recipe_decodes_realistic_data(realistic):
    recall, fp_rate, report = evaluate(realistic, [0, 1])
    assert recall >= 0.95, report
    assert fp_rate <= 0.02, report


def test_recipe_result_has_all_columns_with_physical_coordinates(realistic):
    spots = iss_numpy.process_fov(1, realistic)
    assert list(spots.dtype.names) == ["x", "y", "z", "target", "quality", "xc", "yc", "zc"]
    assert np.all((spots["quality"] >= 0) & (spots["quality"] <= 1))
    # FOV 1 starts at x = 25.6 um (256 px of 0.1 um); starfish: linspace(xmin, xmax, 256)
    assert np.allclose(spots["xc"], 25.6 + spots["x"] * 25.6 / 255)
    assert np.allclose(spots["yc"], spots["y"] * 25.6 / 255)


def test_empty_fov_gives_zero_spots_with_the_columns(realistic, tmp_path):
    spots = iss_numpy.process_fov(2, realistic)
    assert len(spots) == 0
    assert {"x", "y", "z", "target", "quality"} <= set(spots.dtype.names)
    # and process-fov takes it as a success with 0 spots
    out = str(tmp_path / "fovs")
    r = run_script(PROCESS_FOV, STARFISH_RUN_ID=RUN_ID, STARFISH_EXPERIMENT=realistic,
                   STARFISH_RECIPE=NUMPY_RECIPE, STARFISH_FOVS="2", STARFISH_FOV_OUTPUT=out,
                   AWS_BATCH_JOB_ARRAY_INDEX="0")
    assert r.code == 0, r
    with open(os.path.join(out, "fov_002.csv")) as fh:
        lines = fh.read().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fov,x,y")


@pytest.mark.parametrize("fmt", ["PNG", "NUMPY"])
def test_png_and_numpy_tiles_give_the_same_spots_as_tiff(tmp_path, realistic, fmt):
    exp = generate.generate(str(tmp_path / fmt), fovs=1, seed=HELD_OUT_SEED, level="realistic",
                            tile_format=fmt)
    tileset = json.load(open(os.path.join(str(tmp_path / fmt), "primary-fov_000.json")))
    ext = {"PNG": ".png", "NUMPY": ".npy"}[fmt]
    assert tileset["default_tile_format"] == fmt
    assert all(t["tile_format"] == fmt and t["file"].endswith(ext) for t in tileset["tiles"])
    tiff = iss_numpy.process_fov(0, realistic)
    assert len(tiff) > 50
    assert np.array_equal(iss_numpy.process_fov(0, exp), tiff)


def _rewrite(path, change):
    with open(path) as fh:
        doc = json.load(fh)
    change(doc)
    with open(path, "w") as fh:
        json.dump(doc, fh)


def test_recipe_reads_the_spacetx_variants_starfish_reads(tmp_path, realistic):
    """The same FOV as experiment version 4.0.0 (primary_images / auxiliary_images, as
    Experiment.from_json reads below 5.0.0), its primary manifest a collection of collections
    (slicedimage's nested Collection), tile sets named by file:// URL and the FOV named
    fov_0000: the spots are the same as from the plain 5.0.0 layout."""
    src = tmp_path / "variant"
    exp = generate.generate(str(src), fovs=1, seed=HELD_OUT_SEED, level="realistic")
    d = str(src)

    def to_v4(doc):
        images = doc.pop("images")
        doc["version"] = "4.0.0"
        doc["primary_images"] = images.pop("primary")
        doc["auxiliary_images"] = images
    _rewrite(exp, to_v4)
    for image in ("nuclei", "dots"):
        _rewrite(os.path.join(d, "%s.json" % image), lambda m: m.update(
            contents={"fov_0000": "file://" + os.path.join(d, m["contents"]["fov_000"])}))
    with open(os.path.join(d, "primary_image.json")) as fh:
        inner = json.load(fh)
    inner["contents"] = {"fov_0000": "file://" + os.path.join(d, inner["contents"]["fov_000"])}
    os.makedirs(os.path.join(d, "batches"))
    with open(os.path.join(d, "batches", "batch-0.json"), "w") as fh:
        json.dump(inner, fh)
    with open(os.path.join(d, "primary_image.json"), "w") as fh:
        json.dump({"version": "0.1.0", "contents": {"batch-0": "batches/batch-0.json"}, "extras": {}}, fh)

    spots = iss_numpy.process_fov(0, exp)
    assert len(spots) > 50
    assert np.array_equal(spots, iss_numpy.process_fov(0, realistic))


def test_recipe_reads_the_codebook_that_starfish_reads(tmp_path, synthetic):
    """The codebook's reference resolves as slicedimage resolves it (the checked FovSource's
    codebook_url): "code%20book.json" is the file "code book.json"."""
    d = str(tmp_path / "encoded")
    exp = generate.generate(d, fovs=1, seed=0)
    os.rename(os.path.join(d, "codebook.json"), os.path.join(d, "code book.json"))
    _rewrite(exp, lambda doc: doc.update(codebook="code%20book.json"))
    assert iss_numpy.spacetx.check_fov(exp, 0).codebook_url == os.path.join(d, "code book.json")
    spots = iss_numpy.process_fov(0, exp)
    assert len(spots) > 0
    assert np.array_equal(spots, iss_numpy.process_fov(0, synthetic))


def test_a_corrupt_tile_among_good_ones_is_named(tmp_path):
    """A tile set without sha256 (nothing checks the bytes before the recipe): the one truncated
    tile among the FOV's is named in the recipe's error, with its format."""
    d = str(tmp_path / "corrupt")
    exp = generate.generate(d, fovs=1, seed=0)
    tileset = os.path.join(d, "primary-fov_000.json")
    _rewrite(tileset, lambda doc: [t.pop("sha256", None) for t in doc["tiles"]])
    with open(tileset) as fh:
        bad = os.path.join(d, json.load(fh)["tiles"][3]["file"])
    with open(bad, "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(ValueError) as info:
        iss_numpy.process_fov(0, exp)
    assert str(info.value).startswith("tile %s is not a readable TIFF image (" % bad)


def test_every_round_is_registered_to_the_anchor(realistic):
    """The recipe's shifts match the generator's for every round, round 0 included."""
    stated = {(int(s["fov"]), int(s["round"])): (float(s["dx"]), float(s["dy"]))
              for s in load_csv(realistic, "ground_truth_shifts.csv")}
    for fov in (0, 1):
        primary, dots, _, _, _ = iss_numpy.load_fov(realistic, fov)
        shifts = iss_numpy.align(primary, dots)[3]
        for r, (dy, dx) in enumerate(shifts):
            # a spot at p in the anchor is at p - shift in the round; the generator moved it by +d
            assert abs(-dx - stated[fov, r][0]) < 0.3 and abs(-dy - stated[fov, r][1]) < 0.3, (fov, r)


def test_the_recipe_reports_its_largest_round_shift(realistic):
    """What fov_quality.csv shows as registration_shift_px: the longest of the rounds' shifts,
    which is the generator's to within the registration's accuracy."""
    stated = {(int(s["fov"]), int(s["round"])): (float(s["dx"]), float(s["dy"]))
              for s in load_csv(realistic, "ground_truth_shifts.csv")}
    for fov in (0, 1):
        sio.take_fov_facts()
        iss_numpy.process_fov(fov, realistic)
        facts, problems = sio.take_fov_facts()
        truth = max(math.hypot(dx, dy) for (f, _), (dx, dy) in stated.items() if f == fov)
        assert problems == [] and abs(facts["registration_shift_px"] - truth) < 0.3, (fov, facts, truth)


def test_registration_matters(realistic, monkeypatch):
    """Negative control: unregistered, the per-round shifts spoil decoding, so the accuracy
    test above exercises the registration step."""
    monkeypatch.setattr(iss_numpy, "register", lambda filtered, reference: [(0.0, 0.0)] * len(filtered))
    recall, _, report = evaluate(realistic, [0])
    assert recall < 0.5, report


def test_learned_colours_are_the_channel_gains_and_crosstalk(hard):
    """The colours learned from one FOV's spots are the optics the data was made with:
    column k (dye k) holds gain[c] * crosstalk[c, k] / gain[k] in channel c, up to noise."""
    gains = np.array(json.load(open(hard))["extras"]["channel_gains"])
    primary, dots, _, _, _ = iss_numpy.load_fov(hard, 0)
    anchor, filtered, anchor_bp, shifts = iss_numpy.align(primary, dots)
    _, subpix, height = iss_numpy.detect(anchor, anchor_bp, iss_numpy.noise_sigma(anchor))
    values, inside = iss_numpy.measure(filtered, shifts, subpix[:, 0], subpix[:, 1])
    bright = height >= iss_numpy.COLOUR_SIGMAS  # as process_fov does: noise would blur them
    colours = iss_numpy.learn_colours(values[bright], inside[bright])
    learned = colours / np.diag(colours)[None, :]
    expected = np.eye(4)
    for k in range(4):
        for c in (k - 1, k + 1):
            if 0 <= c < 4:
                expected[c, k] = 0.25
    expected = expected * gains[:, None] / gains[None, :]
    print(np.round(learned, 2), np.round(expected, 2), sep="\n")
    assert np.allclose(learned, expected, atol=0.12)
    brightest = np.diag(colours) / np.diag(colours).max()
    assert np.allclose(brightest, gains / gains.max(), atol=0.15)


def _spot_image(spots, size=64, sigma=1.4, noise=0.002, seed=0):
    """A flat background with Gaussian spots (x, y, amplitude) and a little noise."""
    yy, xx = np.mgrid[0:size, 0:size]
    img = 0.05 + sum(a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)) for x, y, a in spots)
    return img + np.random.default_rng(seed).normal(0.0, noise, size=(size, size))


def _candidates(img):
    """(x, y, height in noise sigmas) of detect()'s candidates on a 2-D image."""
    _, subpix, height = iss_numpy.detect(img, iss_numpy.bandpass(img), iss_numpy.noise_sigma(img))
    return [(x, y, h) for (y, x), h in zip(subpix, height)]


def _near(candidates, x, y, px=2.0):
    return [c for c in candidates if np.hypot(c[0] - x, c[1] - y) <= px]


def test_spots_are_placed_to_a_fraction_of_a_pixel():
    found = _candidates(_spot_image([(20.3, 30.7, 0.2), (40.8, 12.25, 0.1)]))
    for tx, ty in [(20.3, 30.7), (40.8, 12.25)]:
        (x, y, height), = _near(found, tx, ty)
        assert abs(x - tx) < 0.15 and abs(y - ty) < 0.15, found
        assert height > 20
    # the other candidates are the noise the lenient threshold lets through: all faint
    assert all(h < 6 for x, y, h in found if not _near([(20.3, 30.7, 0), (40.8, 12.25, 0)], x, y))


def test_a_spot_centred_outside_the_tile_is_not_this_fovs():
    """Its tail makes the border pixel a maximum; the neighbouring FOV owns it. A spot on the
    border pixel itself is kept."""
    found = _candidates(_spot_image([(-1.8, 20.0, 0.3), (0.2, 44.0, 0.3), (63.0, 30.0, 0.3)]))
    assert not _near(found, 0.0, 20.0, px=3.0), found
    (x, _, _), = _near(found, 0.2, 44.0)
    assert abs(x - 0.2) < 0.4
    (x, _, _), = _near(found, 63.0, 30.0)
    assert abs(x - 63.0) < 0.4


def test_png_tiles_read_without_imageio(tmp_path, realistic, monkeypatch):
    """Pillow opens 16-bit PNGs as 32-bit integers; the recipe still scales them as 16-bit."""
    exp = generate.generate(str(tmp_path / "png"), fovs=1, seed=HELD_OUT_SEED, level="realistic",
                            tile_format="PNG")
    monkeypatch.setitem(sys.modules, "imageio", None)  # import imageio raises ImportError
    assert np.array_equal(iss_numpy.process_fov(0, exp), iss_numpy.process_fov(0, realistic))


def test_noise_peaks_are_rejected_for_lack_of_signal(realistic, monkeypatch):
    """Negative control: the anchor threshold is lenient (faint spots), so some noise peaks
    are found; their codeword channels hold no light beyond the noise, and without that
    check they become false spots, even in the tissue-free FOV."""
    monkeypatch.setattr(iss_numpy, "MIN_SIGNAL_SIGMAS", float("-inf"))
    assert len(iss_numpy.process_fov(2, realistic)) > 0
    _, fp_rate, report = evaluate(realistic, [0, 1])
    assert fp_rate > 0.02, report


def test_a_spot_outside_the_tile_in_some_rounds_is_decoded_only_when_unambiguous():
    """A spot at the edge can leave the tile in some rounds; its known rounds decode it when
    they single out one codeword, and it is dropped (quality 0) when they do not."""
    codes = np.array([[0, 1, 2, 3], [0, 1, 2, 0], [1, 1, 0, 3]])
    colours = np.eye(4)
    lit = np.zeros((1, 4, 4))
    for r, c in enumerate(codes[0]):
        lit[0, r, c] = 1.0
    all_in = np.ones((1, 4), dtype=bool)
    last_out = np.array([[True, True, True, False]])   # codes 0 and 1 differ only in round 3
    first_out = np.array([[False, True, True, True]])  # rounds 1-3 tell code 0 from the rest
    assert [round(float(q), 2) for q in iss_numpy.decode(lit, all_in, colours, codes)[1]] == [1.0]
    assert list(iss_numpy.decode(lit, last_out, colours, codes)[1]) == [0.0]
    best, quality = iss_numpy.decode(lit, first_out, colours, codes)
    assert list(best) == [0] and list(quality) == [1.0]
    one_round = np.array([[False, False, False, True]])  # fewer than MIN_KNOWN_ROUNDS
    assert list(iss_numpy.decode(lit, one_round, colours, codes)[1]) == [0.0]


def test_a_codebook_without_iss_codes_is_refused_with_an_example():
    merfish = {"mappings": [{"target": "ACTB", "codeword": [{"r": 0, "c": 0, "v": 1}, {"r": 0, "c": 1, "v": 1},
                                                           {"r": 1, "c": 2, "v": 1}]}]}
    with pytest.raises(ValueError, match=r'^s3://lab/codebook.json has no target with exactly one channel '
                                         r'in each of the 2 rounds.*"codeword": \[\{"r": 0, "c": 2, "v": 1\}'):
        iss_numpy.codebook_codes(merfish, 2, "s3://lab/codebook.json")


def test_nearly_noise_free_images_still_get_a_threshold():
    """A 16-bit image with less than a count of noise has mostly equal neighbours, a MAD of 0;
    the threshold must still stand above the noise, or every flicker is a spot."""
    img = _spot_image([(20.3, 30.7, 0.2), (40.8, 12.25, 0.1)], noise=0.3 / 65535)
    img = np.round(img * 65535) / 65535
    assert iss_numpy.noise_sigma(img) > 0.1 / 65535
    found = _candidates(img)
    spots = [c for c in found if _near([(20.3, 30.7, 0), (40.8, 12.25, 0)], c[0], c[1])]
    assert len(spots) == 2
    assert all(c[2] < 6 for c in found if c not in spots)  # sub-count flicker stays faint


def test_colours_are_learned_from_bright_spots_only(hard, monkeypatch):
    """Negative control: learned from every candidate (noise peaks included, since the anchor
    threshold is lenient), the colours blur and faint spots are lost."""
    with_bright, _, _ = evaluate(hard, [0, 1])
    monkeypatch.setattr(iss_numpy, "COLOUR_SIGMAS", 0.0)
    with_all, _, report = evaluate(hard, [0, 1])
    assert with_all < with_bright - 0.02, report
