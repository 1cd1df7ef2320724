"""The numpy ISS recipe on the synthetic experiment recovers the ground truth."""
import csv
import json
import os

import numpy as np
from scipy.spatial import cKDTree

import generate
import iss_numpy

MATCH_PX = 2.0


def score(spots, truth):
    """Greedy one-to-one matching within MATCH_PX; returns (true positives, false positives)."""
    gxy = np.array([[t["x"], t["y"]] for t in truth])
    tree = cKDTree(gxy)
    used = set()
    tp = fp = 0
    for s in sorted(spots, key=lambda s: -s["quality"]):
        hits = tree.query_ball_point([s["x"], s["y"]], MATCH_PX)
        hits = [i for i in sorted(hits, key=lambda i: np.hypot(*(gxy[i] - [s["x"], s["y"]])))
                if i not in used and truth[i]["target"] == s["target"]]
        if hits:
            used.add(hits[0])
            tp += 1
        else:
            fp += 1
    return tp, fp


def load_truth(exp):
    with open(os.path.join(os.path.dirname(exp), "ground_truth.csv")) as fh:
        rows = list(csv.DictReader(fh))
    return [{"fov": int(r["fov"]), "x": float(r["x"]), "y": float(r["y"]), "target": r["target"]}
            for r in rows]


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
    tile = tileset["tiles"][0]
    assert set(tile) >= {"file", "indices", "coordinates", "tile_shape", "sha256", "tile_format"}
    assert tile["tile_format"] == "TIFF" and tile["tile_shape"] == {"y": 256, "x": 256}
    assert os.path.exists(os.path.join(d, tile["file"]))
    codebook = json.load(open(os.path.join(d, exp["codebook"])))
    assert 8 <= len(codebook["mappings"]) <= 16
    for m in codebook["mappings"]:
        assert sorted(e["r"] for e in m["codeword"]) == [0, 1, 2, 3]  # one channel per round


def test_generator_is_deterministic(tmp_path):
    a = generate.generate(str(tmp_path / "a"), fovs=1, seed=7)
    b = generate.generate(str(tmp_path / "b"), fovs=1, seed=7)
    for name in ("ground_truth.csv", "primary-fov_000.json", "codebook.json"):
        assert open(os.path.join(os.path.dirname(a), name)).read() == \
            open(os.path.join(os.path.dirname(b), name)).read()


def test_numpy_recipe_decodes_ground_truth(synthetic):
    truth = load_truth(synthetic)
    total_truth = total_tp = total_fp = 0
    report = []
    for fov in range(4):
        spots = iss_numpy.process_fov(fov, synthetic)
        t = [r for r in truth if r["fov"] == fov]
        tp, fp = score(spots, t)
        report.append("FOV %d: truth %d, called %d, correct %d, false %d" % (fov, len(t), len(spots), tp, fp))
        total_truth += len(t)
        total_tp += tp
        total_fp += fp
        for s in spots:
            assert set(s) == {"x", "y", "z", "target", "quality"}
            assert 0.0 <= s["quality"] <= 1.0
    recall = total_tp / float(total_truth)
    fp_rate = total_fp / float(max(1, total_tp + total_fp))
    print("\n".join(report) + "\nrecall %.3f, false-positive rate %.3f" % (recall, fp_rate))
    assert total_truth == 320
    assert recall >= 0.95, "\n".join(report)
    assert fp_rate <= 0.05, "\n".join(report)


def test_registration_matters(synthetic, monkeypatch):
    """Negative control: without registration the per-round shifts spoil decoding, so the
    accuracy test above really exercises the registration step."""
    monkeypatch.setattr(iss_numpy, "register", lambda primary, reference: (primary, [(0.0, 0.0)] * len(primary)))
    truth = [t for t in load_truth(synthetic) if t["fov"] == 0]
    tp, fp = score(iss_numpy.process_fov(0, synthetic), truth)
    print("without registration: %d of %d correct, %d false" % (tp, len(truth), fp))
    assert tp / float(len(truth)) < 0.5
