"""ISS recipe using starfish itself (for the process-fov image: spacetx/starfish:0.2.2).

Modelled on starfish's documented ISS pipeline (docs "ISS Processing Workflow" and the
iss_published recipe of starfish's own workflow templates), written against the
starfish 0.2.x API:

1. register every round to the "dots" anchor image with LearnTransform.Translation on the
   max projection over channels and z, and ApplyTransform.Warp;
2. white top-hat filter (Filter.WhiteTophat, masking radius 15 px);
3. detect spots with FindSpots.BlobDetector on the max projection of the (filtered) dots
   image, measuring every round/channel of the registered primary images there;
4. decode with DecodeSpots.PerRoundMaxChannel (per-round max channel, exact codebook match).

process_fov returns the DecodedIntensityTable; process-fov converts it via its features
dataframe (x, y, z, target, distance -> quality = 1 - distance, and drops features whose
passes_thresholds is False or whose target is empty/nan).

This file cannot run without starfish (it is not installed on the development machine);
examples/recipes/iss_numpy.py implements the same steps with numpy/scipy/scikit-image.
"""
import starfish
from starfish import FieldOfView
from starfish.image import ApplyTransform, Filter, LearnTransform
from starfish.spots import DecodeSpots, FindSpots
from starfish.types import Axes, FunctionSource

MASKING_RADIUS = 15   # px, white top-hat structuring element radius
UPSAMPLING = 100      # sub-pixel precision of the translation (1/100 px)


def process_fov(fov_index: int, experiment_url: str):
    """Process one field of view of an ISS experiment; returns a DecodedIntensityTable."""
    fov_name = f"fov_{int(fov_index):03d}"
    experiment = starfish.Experiment.from_json(experiment_url)
    fov = experiment[fov_name]

    primary = fov.get_image(FieldOfView.PRIMARY_IMAGES)
    dots = fov.get_image("dots")

    # 1. registration: learn each round's translation against the dots (anchor) image
    learn_translation = LearnTransform.Translation(
        reference_stack=dots, axes=Axes.ROUND, upsampling=UPSAMPLING)
    transforms_list = learn_translation.run(
        primary.reduce({Axes.CH, Axes.ZPLANE}, func=FunctionSource.np("max")))
    warp = ApplyTransform.Warp()
    registered = warp.run(primary, transforms_list=transforms_list, in_place=False)

    # 2. remove background
    filt = Filter.WhiteTophat(masking_radius=MASKING_RADIUS, is_volume=False)
    filtered = filt.run(registered, in_place=False)
    dots_filtered = filt.run(dots, in_place=False)

    # 3. spots: blob detection on the anchor, measured in every round and channel
    dots_max = dots_filtered.reduce((Axes.ROUND, Axes.ZPLANE), func=FunctionSource.np("max"))
    detector = FindSpots.BlobDetector(
        min_sigma=1,
        max_sigma=10,
        num_sigma=30,
        threshold=0.01,
        measurement_type="mean",
    )
    spots = detector.run(image_stack=filtered, reference_image=dots_max)

    # 4. decode: the brightest channel in each round must spell a codebook codeword
    decoder = DecodeSpots.PerRoundMaxChannel(codebook=experiment.codebook)
    decoded = decoder.run(spots=spots)
    print(f"iss_starfish: {fov_name}: {decoded.sizes['features']} features decoded")
    return decoded
