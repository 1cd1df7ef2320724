"""Stand-in for starfish/core/image/_registration/transforms_list.py (0.2.2 and 0.4.0): what
LearnTransform.Translation(...).run returns. Its ``transforms`` are
``(selectors, TransformType, SimilarityTransform)`` tuples; the SimilarityTransform is
scikit-image's, built as starfish builds it (``SimilarityTransform(translation=shift[::-1])``)."""
from starfish.core.types import TransformType  # noqa: F401 (re-exported as in starfish)


class TransformsList:
    def __init__(self, transforms_list=None):
        self.transforms = transforms_list if transforms_list else list()

    def __repr__(self):
        return "\n".join(f"tile indices: {t[0]}\ntranslation: y={t[2].translation[0]}, x={t[2].translation[1]}, "
                         f"rotation: {t[2].rotation}, scale: {t[2].scale}" for t in self.transforms)

    def append(self, selectors, transform_type, transform_object):
        self.transforms.append((selectors, transform_type, transform_object))
