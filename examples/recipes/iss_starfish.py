"""ISS recipe using starfish itself (for the process-fov image).

Written in the convention of starfish's AWS tutorial (docs/source/user_guide/processing_at_scale):
``process_fov(fov: FieldOfView, codebook: Codebook)``. process-fov sees the annotations, loads the
experiment with ``starfish.Experiment.from_json`` and passes the FOV under its own name in the
experiment (``fov_000``, ``fov_0000``, ...) and the experiment's codebook.

The pipeline is starfish's documented ISS pipeline (the tutorial's recipe and the iss_published
recipe of starfish's WDL workflow), every call checked against the starfish 0.2.2 and 0.4.0
sources, which have the same API for all of them:

1. register every round to the "dots" anchor image with LearnTransform.Translation on the
   max projection over channels and z, and ApplyTransform.Warp;
2. white top-hat filter (Filter.WhiteTophat, masking radius 15 px);
3. detect spots with FindSpots.BlobDetector on the max projection of the (filtered) dots
   image, measuring every round/channel of the registered primary images there;
4. decode with DecodeSpots.PerRoundMaxChannel (per-round max channel, exact codebook match).

process_fov returns the DecodedIntensityTable; process-fov keeps its features dataframe's columns
(pixel x, y, z, physical xc, yc, zc, radius, spot_id, distance -> quality = 1 - distance, ...) and
drops features whose passes_thresholds is False or whose target is empty/nan.

For the other convention (starfish's WDL workflow, ``process_fov(field_num: int, experiment_str:
str)``), :func:`process_fov_by_index` does the same from a FOV index; rename it to process_fov
(and remove the function below) to use it that way.

This file cannot run without starfish (it is not installed on the development machine);
examples/recipes/iss_numpy.py implements the same steps with numpy/scipy/scikit-image.
"""
import starfish
from starfish import Codebook, DecodedIntensityTable, FieldOfView
from starfish.image import ApplyTransform, Filter, LearnTransform
from starfish.spots import DecodeSpots, FindSpots
from starfish.types import Axes, FunctionSource

try:  # process-fov's shared module, where a recipe reports facts about its FOV (the registration shift)
    from starfish_io import registration_shift_px, report_fov_facts
except ImportError:  # run outside process-fov (starfish's own workflow): nobody to report to
    def registration_shift_px(transforms):
        return None

    def report_fov_facts(**facts):
        pass

MASKING_RADIUS = 15   # px, white top-hat structuring element radius
UPSAMPLING = 100      # sub-pixel precision of the translation (1/100 px)
BLOB_MIN_SIGMA = 1    # px, FindSpots.BlobDetector's smallest spot ...
BLOB_MAX_SIGMA = 10   # ... and largest
BLOB_NUM_SIGMA = 30   # sigmas tried between them
BLOB_THRESHOLD = 0.01
MEASUREMENT = "mean"  # a spot's intensity in each round and channel: the mean over its pixels

# The settings above, as the run's summary.json records them ("recipe": {"parameters": ...}):
# merge-results reads this literal from the file without running it (containers/README.md,
# "Recipe parameters"), so it names the constants instead of repeating their values.
PARAMETERS = {
    "masking_radius_px": MASKING_RADIUS,
    "registration_upsampling": UPSAMPLING,
    "blob_min_sigma_px": BLOB_MIN_SIGMA,
    "blob_max_sigma_px": BLOB_MAX_SIGMA,
    "blob_num_sigma": BLOB_NUM_SIGMA,
    "blob_threshold": BLOB_THRESHOLD,
    "measurement_type": MEASUREMENT,
}


def process_fov(fov: FieldOfView, codebook: Codebook) -> DecodedIntensityTable:
    """Process one field of view of an ISS experiment; returns a DecodedIntensityTable."""
    primary = fov.get_image(FieldOfView.PRIMARY_IMAGES)
    dots = fov.get_image("dots")

    # 1. registration: learn each round's translation against the dots (anchor) image
    learn_translation = LearnTransform.Translation(
        reference_stack=dots, axes=Axes.ROUND, upsampling=UPSAMPLING)
    transforms_list = learn_translation.run(
        primary.reduce({Axes.CH, Axes.ZPLANE}, func=FunctionSource.np("max")))
    # the largest round's translation, into fov_quality.csv: a large shift explains a poor FOV
    report_fov_facts(registration_shift_px=registration_shift_px(transforms_list))
    warp = ApplyTransform.Warp()
    registered = warp.run(primary, transforms_list=transforms_list, in_place=False)

    # 2. remove background
    filt = Filter.WhiteTophat(masking_radius=MASKING_RADIUS, is_volume=False)
    filtered = filt.run(registered, in_place=False)
    dots_filtered = filt.run(dots, in_place=False)

    # 3. spots: blob detection on the anchor, measured in every round and channel
    dots_max = dots_filtered.reduce((Axes.ROUND, Axes.ZPLANE), func=FunctionSource.np("max"))
    detector = FindSpots.BlobDetector(
        min_sigma=BLOB_MIN_SIGMA,
        max_sigma=BLOB_MAX_SIGMA,
        num_sigma=BLOB_NUM_SIGMA,
        threshold=BLOB_THRESHOLD,
        measurement_type=MEASUREMENT,
    )
    spots = detector.run(image_stack=filtered, reference_image=dots_max)

    # 4. decode: the brightest channel in each round must spell a codebook codeword
    decoder = DecodeSpots.PerRoundMaxChannel(codebook=codebook)
    decoded = decoder.run(spots=spots)
    print(f"iss_starfish: {fov.name}: {decoded.sizes['features']} features decoded")
    return decoded


def process_fov_by_index(fov_index: int, experiment_url: str) -> DecodedIntensityTable:
    """The same, in the WDL workflow's convention: the recipe loads the experiment and names the
    FOV itself (``fov_NNN``, which only fits experiments that name their FOVs that way)."""
    experiment = starfish.Experiment.from_json(experiment_url)
    return process_fov(experiment[f"fov_{int(fov_index):03d}"], experiment.codebook)
