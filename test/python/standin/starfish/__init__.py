"""A stand-in for the parts of starfish (0.2.2 / 0.4.0) that process-fov and the recipe
conventions touch, for tests on machines where starfish cannot be installed (it needs pandas
and xarray). Tests that need it put test/python/standin on sys.path (or PYTHONPATH); nothing
else does.

Mirrored from starfish's sources, names and behaviour as there:

* ``Experiment.from_json(url)`` (starfish/core/experiment/experiment.py): reads the document,
  accepts format versions 4.0.0 to 5.0.0 (``primary_images`` + ``auxiliary_images`` before 5.0.0,
  ``images`` from 5.0.0), requires ``extras`` and ``codebook``, follows nested collections to
  their tile sets, and names each FOV by its key in the collection; ``experiment[name]``
  raises IndexError for an unknown name; ``experiment.codebook``.
* ``FieldOfView`` (``name``, ``PRIMARY_IMAGES == "primary"``, ``get_image``: here the tile set's
  JSON document, not pixels), ``Codebook.open_json`` (``codebook.target.values``).
* ``IntensityTable`` / ``DecodedIntensityTable``: built from the features dimension's
  coordinates (``radius, z, y, x, spot_id, features, xc, yc, zc, target, distance,
  passes_thresholds`` as PerRoundMaxChannel leaves them); ``to_features_dataframe()`` is
  ``DataFrame(dict(self["features"].coords))``, ``to_decoded_dataframe()`` drops the pixel
  coordinates x, y, z and ``features`` and wraps the rest in ``DecodedSpots``.
* ``TransformsList`` (starfish/core/image/_registration/transforms_list.py), what
  ``LearnTransform.Translation(...).run`` returns, with scikit-image's ``SimilarityTransform``.
"""
import json
import os
import urllib.parse

from starfish._frame import DataFrame
from starfish.core.types import Axes, DecodedSpots, Features

MIN_SUPPORTED_VERSION = (4, 0, 0)
MAX_SUPPORTED_VERSION = (5, 0, 0)

__all__ = ["Codebook", "DecodedIntensityTable", "Experiment", "FieldOfView", "IntensityTable"]


def _path(url):
    if url.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(url).path)
    if "://" in url:
        raise NotImplementedError("stand-in reads local files only: %s" % url)
    return url


def _load(url):
    with open(_path(url)) as fh:
        return json.load(fh)


def _resolve(base_url, ref):
    """slicedimage's resolve_url for local files: absolute and file:// as they are, else next to base."""
    if "://" in ref or os.path.isabs(ref):
        return ref
    return os.path.join(os.path.dirname(_path(base_url)), ref)


def _tilesets(url, doc=None):
    """{fov name: tile set document} of a collection, following nested collections."""
    doc = _load(url) if doc is None else doc
    if "contents" not in doc:
        raise NotImplementedError("stand-in: %s is a bare tile set, not a collection" % url)
    out = {}
    for name, ref in doc["contents"].items():
        child_url = _resolve(url, ref)
        child = _load(child_url)
        if "contents" in child:
            out.update(_tilesets(child_url, child))
        else:
            out[name] = child
    return out


class Codebook(object):
    class _Coord(object):
        def __init__(self, values):
            self.values = list(values)

    def __init__(self, mappings):
        self.mappings = mappings
        self.target = Codebook._Coord(m["target"] for m in mappings)

    @classmethod
    def open_json(cls, json_codebook):
        doc = _load(json_codebook)
        return cls(doc["mappings"] if isinstance(doc, dict) else doc)


class FieldOfView(object):
    PRIMARY_IMAGES = "primary"

    def __init__(self, name, image_tilesets):
        self._name = name
        self._images = image_tilesets

    @property
    def name(self):
        return self._name

    @property
    def image_types(self):
        return set(self._images)

    def get_image(self, item):
        return self._images[item]


class Experiment(object):
    def __init__(self, fovs, codebook, extras):
        self._fovs = fovs
        self._codebook = codebook
        self._extras = extras

    @classmethod
    def from_json(cls, json_url):
        doc = _load(json_url)
        version = tuple(int(p) for p in str(doc["version"]).split("."))
        if not MIN_SUPPORTED_VERSION <= version <= MAX_SUPPORTED_VERSION:
            raise ValueError("version %s not supported.  This version of the starfish library only supports "
                             "formats from 4.0.0 to 5.0.0" % doc["version"])
        codebook = Codebook.open_json(_resolve(json_url, doc["codebook"]))
        extras = doc["extras"]
        if version < (5, 0, 0):
            images = {FieldOfView.PRIMARY_IMAGES: doc["primary_images"]}
            images.update(doc["auxiliary_images"])
        else:
            images = doc["images"]
        collections = {kind: _tilesets(_resolve(json_url, ref)) for kind, ref in images.items()}
        names = set()
        for tilesets in collections.values():
            names.update(tilesets)
        fovs = [FieldOfView(name, {kind: c[name] for kind, c in collections.items() if name in c})
                for name in names]
        return cls(fovs, codebook, extras)

    def fovs(self):
        return sorted(self._fovs, key=lambda fov: fov.name)

    def __getitem__(self, item):
        found = [fov for fov in self.fovs() if fov.name == item]
        if not found:
            raise IndexError('No field of view with name "%s"' % item)
        return found[0]

    def keys(self):
        return (fov.name for fov in self.fovs())

    @property
    def codebook(self):
        return self._codebook

    @property
    def extras(self):
        return self._extras


class IntensityTable(object):
    """The features dimension's coordinates, in order ({name: values}); no intensities."""

    def __init__(self, feature_coords):
        self._coords = DataFrame(feature_coords)

    @property
    def sizes(self):
        return {Features.AXIS: len(self._coords)}

    def to_features_dataframe(self):
        return DataFrame({k: self._coords[k] for k in self._coords.columns})


class DecodedIntensityTable(IntensityTable):
    def to_decoded_dataframe(self):
        df = self.to_features_dataframe()
        pixel = [a.value for a in (Axes.X, Axes.Y, Axes.ZPLANE) if a.value in df.columns]
        return DecodedSpots(df.drop(pixel, axis=1).drop(Features.AXIS, axis=1))
