"""The SpaceTx reader process-fov runs before a recipe: what starfish would do with one FOV.

It follows the real loader, not the schemas: ``Experiment.from_json`` and ``Codebook.open_json``
of starfish 0.2.2 and 0.4.0 (the same code for everything read here) and the reader of
slicedimage 4.1.1, the version both pin. Where the schemas and the loader disagree the loader
wins, because it is what runs: ``extras`` and, in version 4.0.0, ``auxiliary_images`` are
required; codeword entries need ``r``, ``c`` and ``v``; tile shapes are dicts in 0.1.0 tile sets
and [y, x] lists in 0.0.0 ones; PNG tiles are read; ``sha256`` is optional but, when given, must
be the lower-case hex digest.

What is checked, in the loader's order, so that a FOV fails before compute with the file and the
field named (and an example), not halfway through a recipe:

* experiment.json: a version starfish reads (4.0.0 to 5.0.0) and the shape of that version,
  the codebook, ``extras``, every image type's manifest;
* every manifest of every image type, and the tile sets on this FOV's path: partition versions
  0.0.0 to 0.1.x, collections nested to any depth, tile sets' dimensions, shape, tile formats
  and tile entries, and every reference followed (experiment.json's first) under the URL
  policy. from_json parses every tile set, so with starfish one broken tile set fails every FOV;
  here the job of that FOV fails, because each job reads its own path (another FOV's entry,
  fov_<n>, is listed by name, not read): N reads of tile sets per run, not N squared;
* for the FOV asked for: its name (FOVs are addressed by number: ``fov_7``, ``fov_007`` and
  ``fov_0007`` are all FOV 7; two names for one number, or names without one, are refused),
  the fields ImageStack needs when the recipe reads it (indices r and c, coordinates xc and yc),
  a sha256 that can match, and that local tiles exist.

:func:`verify_tiles` then reads the FOV's tiles that declare a sha256 and compares digests,
as slicedimage does when the recipe reads them, but before compute.

References resolve as slicedimage resolves them (relative to the document that names them,
``../`` included; absolute paths and ``file://`` URLs; the name part of a reference is URL-
decoded, so ``a%20b.tiff`` opens ``a b.tiff`` and ``a#b.tiff`` opens ``a``), and every one goes
through :func:`starfish_io.resolve_reference` first, so the URL policy holds.

Errors are :class:`FormatError` with ``code`` 2 (the request cannot be served: the experiment is
missing or unreadable, a reference is refused by the URL policy, the FOV is not addressable) or
1 (the data is not what starfish reads). Kept compatible with Python 3.6+.
"""
import concurrent.futures
import contextlib
import hashlib
import json
import os
import posixpath
import re
import urllib.parse
from pathlib import Path, PurePosixPath

import starfish_io as sio

__all__ = ["FormatError", "Tile", "FovSource", "check_fov", "verify_tiles",
           "EXIT_FAILURE", "EXIT_BAD_REQUEST", "SUPPORTED_VERSIONS"]

EXIT_FAILURE = 1
EXIT_BAD_REQUEST = 2

# starfish/core/experiment/version.py (the same in 0.2.2 and 0.4.0)
SUPPORTED_VERSIONS = ((4, 0, 0), (5, 0, 0))
# slicedimage/io/_v0_0_0.py and _v0_1_0.py: 0.0.0 <= version < 0.2.0
PARTITION_VERSIONS = ((0, 0, 0), (0, 2, 0))
# slicedimage/_formats.py: ImageFormat names and the extensions find_by_extension knows
TILE_FORMATS = ("TIFF", "NUMPY", "PNG")
EXTENSIONS = {"tiff": "TIFF", "tif": "TIFF", "npy": "NUMPY", "png": "PNG"}
# slicedimage/url/resolve.py infer_backend: the schemes it has a backend for
BACKEND_SCHEMES = ("file", "http", "https", "s3")
FOV_NAME = re.compile(r"^fov_(\d+)$")  # the same rule as src/run/experiment.ts

MAX_DEPTH = 16          # nested collections; deeper is a manifest that names itself
READERS = 8             # documents read at once (starfish uses a ThreadPool too)
CHUNK = 1 << 20

EXAMPLE_EXPERIMENT = ('{"version": "5.0.0", "images": {"primary": "primary_images.json"}, '
                      '"codebook": "codebook.json", "extras": {}}')
EXAMPLE_MANIFEST = '{"version": "0.1.0", "contents": {"fov_000": "primary_images-fov_000.json"}}'
EXAMPLE_CODEWORD = '{"r": 0, "c": 1, "v": 1}'
EXAMPLE_TILE = ('{"file": "primary_images-fov_000-c0-r0-z0.tiff", "tile_format": "TIFF", '
                '"indices": {"r": 0, "c": 0, "z": 0}, "coordinates": {"xc": [0.0, 0.1], "yc": [0.0, 0.1]}}')


class FormatError(Exception):
    """What starfish would refuse (or this tool cannot run), as one sentence; ``code`` is the
    exit code process-fov uses: 2 bad request or URL-policy refusal, 1 otherwise."""

    def __init__(self, message, code=EXIT_FAILURE):
        Exception.__init__(self, message)
        self.message = message
        self.code = code


class Tile(object):
    """One tile of the FOV: where it is read from, what the tile set wrote, its declared sha256."""

    __slots__ = ("url", "file", "sha256", "tile_format", "tileset_url", "position")

    def __init__(self, url, file, sha256, tile_format, tileset_url, position):
        self.url = url                    # the location starfish_io reads (a path for local data)
        self.file = file                  # the reference as the tile set wrote it
        self.sha256 = sha256              # lower-case hex, or None when the tile set gives none
        self.tile_format = tile_format    # TIFF, NUMPY or PNG
        self.tileset_url = tileset_url
        self.position = position          # its index in the tile set's "tiles"

    def __repr__(self):
        return "Tile(%r)" % self.url


class FovSource(object):
    """One FOV as starfish would load it: its name in the experiment, the primary tile set and
    its tiles, every image type's tile set of the FOV (``images``: type -> (url, tiles)), and the
    location the experiment's codebook is read from (``codebook_url``, resolved as slicedimage
    resolves it: ``code%20book.json`` is ``code book.json``)."""

    def __init__(self, index, name, experiment_url, version, images, codebook_url=None):
        self.index = index
        self.name = name
        self.experiment_url = experiment_url
        self.version = version
        self.images = images
        self.codebook_url = codebook_url
        self.tileset_url, self.tiles = images["primary"]

    def __repr__(self):
        return "FovSource(%d, %r, %r)" % (self.index, self.name, self.tileset_url)


# ---------------------------------------------------------------------------------------
# locations: where a document is read from, and the base its references resolve against

class _Doc(object):
    """A document's location as starfish_io reads it and its slicedimage base URL (the folder,
    as a URL with a scheme), against which the references it holds resolve."""

    __slots__ = ("location", "base")

    def __init__(self, location, base):
        self.location = location
        self.base = base


def _start(experiment_url):
    """The experiment's own _Doc, as slicedimage's resolve_path_or_url makes it."""
    url = str(experiment_url)
    if url.startswith("file://"):
        return _Doc(sio.local_path(url), _split_url(url)[1])
    if sio.local_path(url) is not None:
        folder = Path(os.path.abspath(url)).parent
        return _Doc(url, folder.as_uri())
    return _Doc(url, _split_url(url)[1])


def _split_url(absolute_url):
    """slicedimage.url.path._parse_absolute_url: (URL-decoded basename, folder URL)."""
    parsed = urllib.parse.urlparse(absolute_url)
    name = posixpath.basename(urllib.parse.unquote(parsed.path))
    folder = urllib.parse.urlunparse((parsed.scheme, parsed.netloc, posixpath.dirname(parsed.path),
                                      parsed.params, parsed.query, parsed.fragment))
    return name, folder


def _url_join(base, ref):
    """slicedimage.url.path.join: the reference appended to the base URL's path."""
    parsed = urllib.parse.urlparse(base)
    return urllib.parse.urlunparse((parsed.scheme, parsed.netloc, posixpath.join(parsed.path, ref),
                                    parsed.params, parsed.query, parsed.fragment))


def _backend_location(name, folder):
    """Where slicedimage's backend reads ``name`` in ``folder``, as starfish_io spells it."""
    parsed = urllib.parse.urlparse(folder)
    if parsed.scheme == "file":  # DiskBackend: the folder path URL-decoded, joined with the name
        return os.path.join(urllib.parse.unquote(parsed.path), name)
    if parsed.scheme == "s3":    # S3Backend: the key is the folder path (as written) / name
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        return "s3://%s/%s" % (parsed.netloc, str(PurePosixPath(path) / name))
    return _requote(_url_join(folder, name))  # HttpBackend, through requests


def _requote(url):
    """The URL as requests sends it (requote_uri): characters a URL cannot hold, such as the
    space of a decoded name, percent-encoded; what is already encoded left alone."""
    parsed = urllib.parse.urlparse(url)
    path = urllib.parse.quote(parsed.path, safe="!#$%&'()*+,/:;=?@[]~")
    return urllib.parse.urlunparse(parsed._replace(path=path))


def _same_origin(doc, ref):
    """What slicedimage makes of an absolute path in a remote document: the same bucket or host
    (it joins the path to the base URL). The URL policy refuses such paths all the same (they
    would name the job's own files to a reader that took them as paths), so this only words the
    refusal."""
    parsed = urllib.parse.urlparse(doc.base)
    return urllib.parse.urlunparse((parsed.scheme, parsed.netloc, ref, "", "", ""))


def _resolve(doc, ref, field, local_mode):
    """The _Doc a reference names, under the URL policy (FormatError 2 when it refuses)."""
    if not isinstance(ref, str) or not ref:
        raise FormatError("%s in %s must be a file name or URL (a string), got %s; e.g. %s"
                          % (field, doc.location, _show(ref), _example_ref(field)))
    scheme = urllib.parse.urlparse(ref).scheme
    try:
        sio.resolve_reference(doc.location, ref, local_mode)
    except sio.UrlRefused as exc:
        hint = ""
        if not scheme and ref.startswith("/") and sio.local_path(doc.location) is None:
            hint = (" (starfish itself would read %s there; write that URL if it is what you mean)"
                    % _same_origin(doc, ref))
        raise FormatError("%s in %s: %s%s" % (field, doc.location, exc, hint), EXIT_BAD_REQUEST)
    if scheme and scheme not in BACKEND_SCHEMES:  # what the policy takes for a path: c:\\tiles\\a.tiff
        raise FormatError("%s in %s: %s: starfish has no reader for %s: (it reads file://, https:// and s3:// URLs "
                          "and paths relative to the file that names them)" % (field, doc.location, ref, scheme))
    absolute = ref if scheme else _url_join(doc.base, ref)
    name, folder = _split_url(absolute)
    _check_url_syntax(absolute, ref, name, field, doc)
    return _Doc(_backend_location(name, folder), folder)


def _check_url_syntax(absolute, ref, name, field, doc):
    """slicedimage parses a reference as a URL: on disk and S3, what follows ';', '?' or '#' is
    not part of the file name, so starfish opens another file than the one written."""
    parsed = urllib.parse.urlparse(absolute)
    if parsed.scheme in ("file", "s3") and (parsed.params or parsed.query or parsed.fragment):
        raise FormatError("%s: %s %s: slicedimage reads references as URLs, so starfish would open %s (a ';', '?' or "
                          "'#' ends the file name in a URL); rename the file, or write the character encoded: %%3B "
                          "for ';', %%3F for '?', %%23 for '#'" % (doc.location, field, _show(ref), _show(name)))


def _example_ref(field):
    if "codebook" in field:
        return '"codebook.json"'
    if ".file" in field:
        return '"primary_images-fov_000-c0-r0-z0.tiff"'
    return '"primary_images.json"'


def _show(value, limit=60):
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------------------------------
# reading documents

# Documents read under reading_once(): location -> parsed JSON. None outside it.
_documents = [None]


@contextlib.contextmanager
def reading_once():
    """Within this block each document is read once: a packed child checks many FOVs of one
    experiment, whose experiment.json, codebook and collections are the same for all of them."""
    before = _documents[0]
    _documents[0] = {}
    try:
        yield
    finally:
        _documents[0] = before


def _read_json(doc, named_by, code=EXIT_FAILURE):
    """The JSON document at doc.location (once per reading_once() block); FormatError naming who
    refers to it otherwise."""
    cache = _documents[0]
    if cache is not None and doc.location in cache:
        return cache[doc.location]
    value = _read_json_now(doc, named_by, code)
    if cache is not None:
        cache[doc.location] = value
    return value


def _read_json_now(doc, named_by, code):
    by = " (named by %s)" % named_by if named_by else ""
    try:
        text = sio.read_text(doc.location)
    except FileNotFoundError:
        raise FormatError("%s not found%s" % (doc.location, by), code)
    except sio.UrlRefused as exc:
        raise FormatError(str(exc), EXIT_BAD_REQUEST)
    except UnicodeDecodeError:
        raise FormatError("%s is not valid JSON: it is not UTF-8 text%s" % (doc.location, by), code)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FormatError("%s is not valid JSON: %s%s" % (doc.location, exc, by), code)


def _read_all(docs_and_names):
    """_read_json of many documents at once (in their order); the first failure is raised."""
    items = list(docs_and_names)
    if len(items) <= 1:
        return [_read_json(d, n) for d, n in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=READERS) as pool:
        # starfish_io's local_files() switch is process-wide, so the threads read under the caller's
        return list(pool.map(lambda item: _read_json(*item), items))


# ---------------------------------------------------------------------------------------
# versions

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_PEP440 = re.compile(r"^\s*v?(\d+(?:\.\d+)*)"
                     r"(?:[-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?\d*)?"
                     r"(?:(?:-\d+)|(?:[-_.]?(post|rev|r)[-_.]?\d*))?"
                     r"(?:[-_.]?(dev)[-_.]?\d*)?"
                     r"(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?\s*$", re.IGNORECASE)


def _dotted(triple):
    return "%d.%d.%d" % triple


def experiment_version(doc, url):
    """(version as (major, minor, patch), whether it has the 4.0.0 shape), as starfish's
    verify_version takes it: semantic_version.Version, 4.0.0 to 5.0.0 inclusive, a pre-release
    sorting before its release."""
    low, high = SUPPORTED_VERSIONS
    accepted = "starfish reads experiment versions %s to %s, e.g. %s" % (_dotted(low), _dotted(high),
                                                                          EXAMPLE_EXPERIMENT)
    if "version" not in doc:
        raise FormatError("%s: no \"version\"; %s" % (url, accepted))
    raw = doc["version"]
    m = _SEMVER.match(raw) if isinstance(raw, str) else None
    if not m:
        raise FormatError("%s: version %s is not a major.minor.patch version; %s" % (url, _show(raw), accepted))
    triple = tuple(int(g) for g in m.group(1, 2, 3))
    pre = m.group(4) is not None
    if not _in_range(triple, pre, low, high, high_inclusive=True):
        raise FormatError("%s: version %s is not one starfish reads; %s" % (url, raw, accepted))
    # from_json: version < 5.0.0 has primary_images and auxiliary_images, 5.0.0 has images
    return triple, (triple, not pre) < (high, True)


def _in_range(key, pre, low, high, high_inclusive):
    """low <= version (< or <=) high, where a pre-release sorts just before its release."""
    zeros = (0,) * (len(key) - len(low))
    low, high = low + zeros, high + zeros
    above = key > low or (key == low and not pre)
    below = key < high or (key == high and (pre or high_inclusive))
    return above and below


def _partition_release(raw):
    """(release padded to 3 numbers, whether it is a pre-release) of a PEP 440 version, as
    packaging.version.parse reads it; None for what it cannot read."""
    m = _PEP440.match(raw) if isinstance(raw, str) else None
    if not m:
        return None
    release = tuple(int(p) for p in m.group(1).split("."))
    release = release + (0,) * (3 - len(release))
    pre = bool(m.group(2) or m.group(4)) and not m.group(3)  # 0.2.0rc1 and 0.2.0.dev1 sort before 0.2.0
    return release, pre


def _partition_version_ok(raw):
    """slicedimage's Reader.parse_doc: packaging.version.parse(v) in [0.0.0, 0.2.0)."""
    parsed = _partition_release(raw)
    return parsed is not None and _in_range(parsed[0], parsed[1], PARTITION_VERSIONS[0], PARTITION_VERSIONS[1],
                                            high_inclusive=False)


def _check_partition_version(doc, url, named_by):
    if "version" not in doc:
        raise FormatError("%s (named by %s): no \"version\"; slicedimage reads tile sets and manifests of "
                          "versions 0.0.0 to 0.1.x, e.g. \"version\": \"0.1.0\"" % (url, named_by))
    if not _partition_version_ok(doc["version"]):
        raise FormatError("%s: version %s is not one slicedimage reads (0.0.0 to 0.1.x); write \"version\": "
                          "\"0.1.0\"" % (url, _show(doc["version"])))


# ---------------------------------------------------------------------------------------
# experiment.json and the codebook (Experiment.from_json, Codebook.open_json)

def _image_refs(doc, url, v4):
    """{image type: reference} in from_json's order, after checking the version's shape."""
    if v4:
        for key in ("primary_images", "auxiliary_images"):
            if key not in doc:
                raise FormatError("%s: no \"%s\"; a version %s experiment names its images with "
                                  "\"primary_images\" and \"auxiliary_images\" (both required by from_json), e.g. "
                                  "{\"version\": \"4.0.0\", \"primary_images\": \"primary_images.json\", "
                                  "\"auxiliary_images\": {}, \"codebook\": \"codebook.json\", \"extras\": {}}"
                                  % (url, key, doc["version"]) + _prerelease_hint(doc["version"]))
        aux = doc["auxiliary_images"]
        if not isinstance(aux, dict):
            raise FormatError("%s: auxiliary_images must be an object of image type to manifest, got %s; e.g. "
                              "{\"nuclei\": \"nuclei.json\"} or {}" % (url, _show(aux)))
        refs = [("primary", doc["primary_images"], "primary_images")]
        refs.extend((kind, ref, "auxiliary_images.%s" % kind) for kind, ref in aux.items())
        return refs
    if "images" not in doc:
        raise FormatError("%s: no \"images\"; a version %s experiment names its images in \"images\", e.g. %s "
                          "(\"primary_images\" is the 4.0.0 spelling)" % (url, doc["version"], EXAMPLE_EXPERIMENT))
    images = doc["images"]
    if not isinstance(images, dict):
        raise FormatError("%s: images must be an object of image type to manifest, got %s; e.g. "
                          "{\"primary\": \"primary_images.json\"}" % (url, _show(images)))
    if "primary" not in images:
        raise FormatError("%s: images.primary is missing (starfish loads the experiment, but the recipes this "
                          "tool runs read the primary images); e.g. \"images\": {\"primary\": "
                          "\"primary_images.json\"}" % url)
    return [(kind, ref, "images.%s" % kind) for kind, ref in images.items()]


def _prerelease_hint(version):
    if version.startswith("5.0.0-"):
        return ("; %s is a pre-release, which sorts before 5.0.0, so starfish reads it as the 4.0.0 shape: "
                "write \"version\": \"5.0.0\"" % version)
    return ""


def _check_extras(doc, url):
    if "extras" not in doc:
        raise FormatError("%s: no \"extras\" (optional in the schema, but starfish's Experiment.from_json reads "
                          "it); add \"extras\": {}" % url)


def _check_codebook(book, url):
    """Codebook.open_json and from_code_array: version 0.0.0, mappings with codeword entries r, c, v."""
    if isinstance(book, list):
        raise FormatError("%s: the codebook is a list (the format before codebook 0.0.0); starfish reads "
                          "{\"version\": \"0.0.0\", \"mappings\": [...]}" % url)
    if not isinstance(book, dict):
        raise FormatError("%s: the codebook must be an object like {\"version\": \"0.0.0\", \"mappings\": [...]}, "
                          "got %s" % (url, _show(book)))
    if "version" not in book:
        raise FormatError("%s: no \"version\"; starfish reads codebook version 0.0.0: \"version\": \"0.0.0\"" % url)
    m = _SEMVER.match(book["version"]) if isinstance(book["version"], str) else None
    if not (m and tuple(int(g) for g in m.group(1, 2, 3)) == (0, 0, 0) and m.group(4) is None):
        raise FormatError("%s: version %s is not one starfish reads; codebooks are version 0.0.0 only"
                          % (url, _show(book["version"])))
    mappings = book.get("mappings")
    if not isinstance(mappings, list):
        raise FormatError("%s: \"mappings\" must be a list of {\"codeword\": [...], \"target\": \"ACTB\"}, got %s"
                          % (url, "nothing" if mappings is None else _show(mappings)))
    for i, code in enumerate(mappings):
        _check_code(code, "mappings[%d]" % i, url)


def _check_code(code, field, url):
    if not isinstance(code, dict) or "codeword" not in code or "target" not in code:
        raise FormatError("%s: %s must have \"codeword\" and \"target\", e.g. {\"codeword\": [%s], "
                          "\"target\": \"ACTB\"}" % (url, field, EXAMPLE_CODEWORD))
    if not isinstance(code["codeword"], list):
        raise FormatError("%s: %s.codeword must be a list of entries like %s" % (url, field, EXAMPLE_CODEWORD))
    for j, entry in enumerate(code["codeword"]):
        where = "%s.codeword[%d]" % (field, j)
        if not isinstance(entry, dict):
            raise FormatError("%s: %s must be an object like %s" % (url, where, EXAMPLE_CODEWORD))
        missing = [k for k in ("r", "c", "v") if k not in entry]
        if missing:
            raise FormatError("%s: %s has no %s (the schema has defaults, but starfish's Codebook needs r, c "
                              "and v in every entry), e.g. %s" % (url, where, " or ".join('"%s"' % k for k in missing),
                                                                  EXAMPLE_CODEWORD))
        for k in ("r", "c", "v"):  # from_code_array takes max() of r and c and int() of all three
            bad = not _is_number(entry[k]) if k == "v" else not (_is_number(entry[k]) and entry[k] >= 0
                                                                   and entry[k] == int(entry[k]))
            if bad:
                raise FormatError("%s: %s.%s must be a %s, got %s; e.g. %s"
                                  % (url, where, k, "number" if k == "v" else "round or channel number (0, 1, ...)",
                                     _show(entry[k]), EXAMPLE_CODEWORD))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------
# manifests and tile sets (slicedimage's Reader.parse_doc, Collection.all_tilesets)

class _Leaf(object):
    """A tile set of an image type: its name in the collection that lists it, where it is."""

    __slots__ = ("name", "doc", "json", "listed_in", "order", "formats")

    def __init__(self, name, doc, js, listed_in, order, formats):
        self.name, self.doc, self.json, self.listed_in, self.order = name, doc, js, listed_in, order
        self.formats = formats  # (tile format, location) of each tile


def _walk(top, named_by, local_mode, index):
    """Every tile set under the image manifest ``top``, in all_tilesets() order (depth first,
    in each collection's order), each checked as slicedimage parses it. Collections are read a
    level at a time, in parallel.

    Entries named for another FOV (fov_<n>, n != ``index``) are listed by name but not read: each
    FOV's job reads its own path, so a run of N FOVs costs N reads of tile sets, not N squared
    (starfish's from_json reads them all; a recipe that calls it pays that itself)."""
    level = [(None, top, named_by, None, ())]
    leaves = []
    for _ in range(MAX_DEPTH + 1):
        if not level:
            return sorted(leaves, key=lambda leaf: leaf.order)
        docs = _read_all((doc, by) for _, doc, by, _, _ in level)
        next_level = []
        for (name, doc, by, listed_in, order), js in zip(level, docs):
            kind = _partition_kind(js, doc.location, by)
            if kind == "tiles":
                if name is None:
                    raise FormatError("%s (%s) is a tile set; starfish needs a fov manifest there (from_json lists "
                                      "the FOVs of every image with all_tilesets()), e.g. %s"
                                      % (doc.location, named_by, EXAMPLE_MANIFEST))
                leaves.append(_Leaf(name, doc, js, listed_in, order, _check_tileset(js, doc, local_mode)))
                continue
            for i, (child, ref) in enumerate(js["contents"].items()):
                child_doc = _resolve(doc, ref, "contents.%s" % child, local_mode)
                if _fov_number(child) not in (None, index):
                    leaves.append(_Leaf(child, child_doc, None, doc.location, order + (i,), None))
                    continue
                next_level.append((child, child_doc, "contents.%s in %s" % (child, doc.location), doc.location,
                                   order + (i,)))
        level = next_level
    raise FormatError("%s: collections nested more than %d deep under it (a manifest that lists itself?)"
                      % (top.location, MAX_DEPTH))


def _partition_kind(js, url, named_by):
    """"contents" (a collection) or "tiles" (a tile set), as slicedimage's Reader.parse decides."""
    if not isinstance(js, dict):
        raise FormatError("%s (named by %s) must be a JSON object, a fov manifest like %s or a tile set"
                          % (url, named_by, EXAMPLE_MANIFEST))
    _check_partition_version(js, url, named_by)
    if "contents" in js:
        if not isinstance(js["contents"], dict):
            raise FormatError("%s: contents must be an object of FOV name to tile set, e.g. %s"
                              % (url, EXAMPLE_MANIFEST))
        return "contents"
    if "tiles" in js:
        return "tiles"
    raise FormatError("%s (named by %s): neither \"contents\" (a fov manifest, e.g. %s) nor \"tiles\" (a tile set)"
                      % (url, named_by, EXAMPLE_MANIFEST))


def _old_shapes(js):
    """Whether slicedimage's 0.0.0 reader parses this tile set (versions below 0.1.0): it takes
    shapes as [y, x]; the 0.1.0 reader takes {"y": .., "x": ..}."""
    release, pre = _partition_release(js["version"])
    return _in_range(release, pre, (0, 0, 0), (0, 1, 0), high_inclusive=False)


def _check_shape(value, old, url, field):
    if value is None:
        return
    if old and not (isinstance(value, list) and len(value) >= 2):
        raise FormatError("%s: %s %s must be [y, x] in a 0.0.0 tile set (slicedimage's 0.0.0 reader), e.g. "
                          "[2048, 2048]" % (url, field, _show(value)))
    if not old and not isinstance(value, dict):
        raise FormatError("%s: %s %s must be {\"y\": 2048, \"x\": 2048} in a 0.1.0 tile set (slicedimage's 0.1.0 "
                          "reader; [y, x] is the 0.0.0 form)" % (url, field, _show(value)))


def _check_tileset(js, doc, local_mode):
    """What slicedimage's reader needs of a tile set (for every FOV: from_json parses them all),
    and every tile reference under the URL policy. Returns (tile format, location) of each tile."""
    url = doc.location
    for key in ("dimensions", "shape"):
        if key not in js:
            raise FormatError("%s: no \"%s\"; a tile set has \"dimensions\": [\"r\", \"c\", \"z\", \"y\", \"x\"] and "
                              "\"shape\": {\"r\": 4, \"c\": 4, \"z\": 1}" % (url, key))
    dims = js["dimensions"]
    if not isinstance(dims, (list, str, dict)) or any(isinstance(d, (list, dict)) for d in dims):
        raise FormatError("%s: dimensions must be a list like [\"r\", \"c\", \"z\", \"y\", \"x\"], got %s"
                          % (url, _show(js["dimensions"])))
    if not isinstance(js["shape"], dict):
        raise FormatError("%s: shape must be an object like {\"r\": 4, \"c\": 4, \"z\": 1}, got %s"
                          % (url, _show(js["shape"])))
    old = _old_shapes(js)
    _check_shape(js.get("default_tile_shape"), old, url, "default_tile_shape")
    default = js.get("default_tile_format")
    if default is not None and default not in TILE_FORMATS:
        raise FormatError("%s: default_tile_format %s is not one slicedimage reads: TIFF, NUMPY or PNG"
                          % (url, _show(default)))
    if not isinstance(js["tiles"], list):
        raise FormatError("%s: tiles must be a list of tiles like %s" % (url, EXAMPLE_TILE))
    return [_check_tile(t, i, old, default, doc, local_mode) for i, t in enumerate(js["tiles"])]


def _check_tile(tile, i, old, default, doc, local_mode):
    url, field = doc.location, "tiles[%d]" % i
    if not isinstance(tile, dict):
        raise FormatError("%s: %s must be an object like %s" % (url, field, EXAMPLE_TILE))
    for key in ("file", "coordinates", "indices"):
        if key not in tile:
            raise FormatError("%s: %s has no \"%s\" (slicedimage reads file, coordinates and indices of every tile), "
                              "e.g. %s" % (url, field, key, EXAMPLE_TILE))
    ref = tile["file"]
    if not isinstance(ref, str) or not ref:
        raise FormatError("%s: %s.file must be a file name or URL, got %s; e.g. \"primary_images-fov_000-c0-r0-z0"
                          ".tiff\"" % (url, field, _show(ref)))
    target = _resolve(doc, ref, field + ".file", local_mode)  # the URL policy first
    if not isinstance(tile["coordinates"], dict) or not all(_coordinate_ok(v) for v in tile["coordinates"].values()):
        raise FormatError("%s: %s.coordinates must map xc, yc (and zc) to [min, max] or a number, got %s; e.g. "
                          "{\"xc\": [0.0, 0.1], \"yc\": [0.0, 0.1], \"zc\": 0.0}" % (url, field,
                                                                                    _show(tile["coordinates"])))
    if not isinstance(tile["indices"], dict):
        raise FormatError("%s: %s.indices must be an object like {\"r\": 0, \"c\": 0, \"z\": 0}, got %s"
                          % (url, field, _show(tile["indices"])))
    _check_shape(tile.get("tile_shape"), old, url, field + ".tile_shape")
    return _tile_format(tile, ref, default, url, field, doc), target.location


def _coordinate_ok(value):
    """slicedimage's format_tile_coordinates: whatever has two items (it takes tuple(value)), or
    a scalar that becomes (v, v). ImageStack's stricter needs are checked for the FOV's tiles."""
    if isinstance(value, (list, str, dict)):
        return len(value) == 2
    return True


def _tile_format(tile, ref, default, url, field, doc):
    """The tile's ImageFormat name: its tile_format, else the tile set's default, else its extension."""
    named = tile.get("tile_format")
    if named:
        if named not in TILE_FORMATS:
            raise FormatError("%s: %s.tile_format %s is not one slicedimage reads: TIFF, NUMPY or PNG (upper case)"
                              % (url, field, _show(named)))
        return named
    if default is not None:
        return default
    scheme = urllib.parse.urlparse(ref).scheme
    name, _ = _split_url(ref if scheme else _url_join(doc.base, ref))
    ext = os.path.splitext(name)[1].lstrip(".")
    if ext.lower() not in EXTENSIONS:
        raise FormatError("%s: %s (file %s) has no tile_format, the tile set no default_tile_format, and slicedimage "
                          "does not know the extension %s; add \"tile_format\": \"TIFF\" (or NUMPY, PNG), or name the "
                          "file .tiff, .tif, .npy or .png" % (url, field, ref, "." + ext if ext else "(none)"))
    return EXTENSIONS[ext.lower()]


# ---------------------------------------------------------------------------------------
# the FOV: its name, its tile sets, its tiles

def _fov_number(name):
    m = FOV_NAME.match(name)
    return int(m.group(1)) if m else None


def _first_listing(leaves, name):
    return next(leaf.listed_in for leaf in leaves if leaf.name == name)


def _fov_name(index, walks, v4):
    """The FOV's name in the experiment: the one name whose number is ``index``. FormatError 2
    when the experiment has no such FOV, or names FOVs so that a number is not enough."""
    primary = walks["primary"]
    names = []
    for kind in ["primary"] + ([] if v4 else sorted(k for k in walks if k != "primary")):
        for leaf in walks[kind]:
            if leaf.name not in names:
                names.append(leaf.name)
    unnumbered = [n for n in names if _fov_number(n) is None]
    if unnumbered:
        where = next(leaf.listed_in for kind in walks for leaf in walks[kind] if leaf.name == unnumbered[0])
        shown = ", ".join(_show(n) for n in unnumbered[:5]) + (", ..." if len(unnumbered) > 5 else "")
        one = len(unnumbered) == 1
        raise FormatError("%s: FOV name%s %s %s no number; starfish accepts any name, but this tool addresses FOVs by "
                          "number: name them fov_000, fov_001, ... (fov_<number>)"
                          % (where, "" if one else "s", shown, "has" if one else "have"), EXIT_BAD_REQUEST)
    matches = [n for n in names if _fov_number(n) == index]
    if len(matches) > 1:
        raise FormatError("FOV %d has %d names in the experiment: %s (starfish loads them as different FOVs, this "
                          "tool addresses FOVs by number); keep one name per number, e.g. fov_%03d"
                          % (index, len(matches), " and ".join(matches), index), EXIT_BAD_REQUEST)
    if not matches:
        numbered = sorted((n for n in names if n in {leaf.name for leaf in primary}), key=_fov_number)
        have = "%d FOVs: %s..%s" % (len(numbered), numbered[0], numbered[-1]) if numbered else "no FOVs"
        raise FormatError("FOV %d is not in the experiment (primary images have %s)" % (index, have), EXIT_BAD_REQUEST)
    name = matches[0]
    listed = [leaf for leaf in primary if leaf.name == name]
    if not listed:
        others = sorted(kind for kind in walks if any(leaf.name == name for leaf in walks[kind]))
        raise FormatError("FOV %d (%s) has no primary images: only %s %s it (in %s)"
                          % (index, name, " and ".join(others), "has" if len(others) == 1 else "have",
                             _first_listing(walks[others[0]], name)), EXIT_BAD_REQUEST)
    if len(listed) > 1:
        raise FormatError("FOV %d: %s is listed more than once in the primary images, in %s; starfish 5.0.0 would take "
                          "the first and 4.0.0 load two FOVs of that name: give each FOV one name"
                          % (index, name, " and ".join(leaf.listed_in for leaf in listed)), EXIT_FAILURE)
    return name


def _fov_tiles(leaf, index, local_mode):
    """The tiles of the FOV's tile set (resolved under the URL policy by _check_tile), with what
    ImageStack reads of each (indices r and c, coordinates xc and yc) and a usable sha256."""
    url = leaf.doc.location
    tiles = []
    for i, (entry, (fmt, location)) in enumerate(zip(leaf.json["tiles"], leaf.formats)):
        field = "tiles[%d]" % i
        for key, needed, example in (("indices", ("r", "c"), '{"r": 0, "c": 0, "z": 0}'),
                                     ("coordinates", ("xc", "yc"), '{"xc": [0.0, 0.1], "yc": [0.0, 0.1]}')):
            missing = [k for k in needed if k not in entry[key]]
            if missing:
                raise FormatError("FOV %d: %s: %s.%s has no %s (starfish's ImageStack reads %s of every tile when "
                                  "the recipe loads the image), e.g. %s"
                                  % (index, url, field, key, " or ".join('"%s"' % k for k in missing),
                                     " and ".join(needed), example))
        for axis in ("xc", "yc"):
            if not _physical_range(entry["coordinates"][axis]):
                raise FormatError("FOV %d: %s: %s.coordinates.%s %s must be [min, max] in micrometres or one number "
                                  "(starfish spaces the pixels between them), e.g. \"%s\": [0.0, 0.1]"
                                  % (index, url, field, axis, _show(entry["coordinates"][axis]), axis))
        digest = entry.get("sha256")
        if digest is not None:
            _check_digest(digest, entry["file"], index, url, field)
        path = sio.local_path(location)
        if local_mode and path is not None and not os.path.exists(path):
            raise FormatError("FOV %d: tile not found: %s (%s.file in %s)" % (index, path, field, url))
        tiles.append(Tile(location, entry["file"], digest, fmt, url, i))
    return tiles


def _physical_range(value):
    """What ImageStack's np.linspace(range[0], range[1], pixels) takes: two numbers, or one."""
    if isinstance(value, list):
        return len(value) == 2 and all(_is_number(v) for v in value)
    return _is_number(value)


def _check_digest(digest, file, index, url, field):
    if isinstance(digest, str) and re.match(r"^[0-9A-Fa-f]{64}$", digest) and digest != digest.lower():
        raise FormatError("FOV %d: %s: %s.sha256 of %s is in upper case; slicedimage compares it with the lower-case "
                          "hex digest, so it would never match: write %s" % (index, url, field, file, digest.lower()))
    if not (isinstance(digest, str) and re.match(r"^[0-9a-f]{64}$", digest)):
        raise FormatError("FOV %d: %s: %s.sha256 of %s must be 64 lower-case hex digits (the file's SHA-256), got %s; "
                          "e.g. \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\""
                          % (index, url, field, file, _show(digest)))


# ---------------------------------------------------------------------------------------
# the entry points

def check_fov(experiment_url, fov_index):
    """The FOV ``fov_index`` of the experiment, checked as starfish would load it (see the module
    doc), or FormatError. Reads only JSON (and, for local data, checks that the tiles exist)."""
    local_mode = sio.local_path(experiment_url) is not None
    with sio.local_files(local_mode):
        return _check_fov(str(experiment_url), int(fov_index), local_mode)


def _check_fov(url, index, local_mode):
    exp = _start(url)
    try:
        js = _read_json(exp, None, code=EXIT_BAD_REQUEST)
    except FormatError as exc:
        if exc.message == "%s not found" % exp.location:
            raise FormatError("experiment not found: %s" % url, EXIT_BAD_REQUEST)
        raise
    if not isinstance(js, dict):
        raise FormatError("%s is not a SpaceTx experiment (a JSON object like %s)" % (url, EXAMPLE_EXPERIMENT),
                          EXIT_BAD_REQUEST)
    _check_references(exp, js, local_mode)
    version, v4 = experiment_version(js, url)
    refs = _image_refs(js, url, v4)
    if "codebook" not in js:
        raise FormatError("%s: no \"codebook\"; e.g. \"codebook\": \"codebook.json\"" % url)
    codebook = _resolve(exp, js["codebook"], "codebook", local_mode)
    images = [(kind, _resolve(exp, ref, field, local_mode), field) for kind, ref, field in refs]
    _check_extras(js, url)
    _check_codebook(_read_json(codebook, "codebook in %s" % url), codebook.location)
    walks = {kind: _walk(doc, "%s in %s" % (field, url), local_mode, index) for kind, doc, field in images}
    name = _fov_name(index, walks, v4)
    sets = {}
    for kind, leaves in walks.items():
        leaf = next((leaf for leaf in leaves if leaf.name == name), None)  # Collection.find_tileset
        if leaf is not None:
            sets[kind] = (leaf.doc.location, _fov_tiles(leaf, index, local_mode))
    return FovSource(index, name, url, "%d.%d.%d" % version, sets, codebook.location)


def _check_references(exp, js, local_mode):
    """Every reference experiment.json holds passes the URL policy before anything else is read
    or judged: a hostile reference is refused as such, whatever else is wrong with the file."""
    refs = [("codebook", js.get("codebook")), ("primary_images", js.get("primary_images"))]
    for key in ("images", "auxiliary_images"):
        if isinstance(js.get(key), dict):
            refs.extend(("%s.%s" % (key, kind), ref) for kind, ref in sorted(js[key].items()))
    for field, ref in refs:
        if isinstance(ref, str) and ref:
            _resolve(exp, ref, field, local_mode)


def verify_tiles(source, kinds=None):
    """Check every tile of the FOV that declares a sha256 against its content (all image types,
    or those in ``kinds``), as slicedimage does when the recipe reads it: FormatError 1 naming the
    tile, the expected and the actual digest. Local and s3 tiles are hashed as they stream in;
    https ones are read whole under starfish_io's size cap."""
    local_mode = sio.local_path(source.experiment_url) is not None
    tiles = [t for kind, (_, ts) in sorted(source.images.items()) if kinds is None or kind in kinds
             for t in ts if t.sha256 is not None]
    with sio.local_files(local_mode):
        if len(tiles) <= 1:
            for tile in tiles:
                _verify(tile, source.index)
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(READERS, len(tiles))) as pool:
            list(pool.map(lambda t: _verify(t, source.index), tiles))


def _verify(tile, index):
    try:
        actual = _digest(tile.url)
    except FileNotFoundError:
        raise FormatError("FOV %d: tile not found: %s (tiles[%d].file in %s)" % (index, tile.url, tile.position,
                                                                                tile.tileset_url))
    except sio.UrlRefused as exc:
        raise FormatError(str(exc), EXIT_BAD_REQUEST)
    except (OSError, IOError) as exc:  # a folder where a file should be, no permission, a failing disk
        raise FormatError("FOV %d: tile %s (tiles[%d] in %s) could not be read: %s"
                          % (index, tile.url, tile.position, tile.tileset_url, sio.describe_os_error(exc)))
    if actual != tile.sha256:
        raise FormatError("FOV %d: tile %s does not match its sha256 (tiles[%d] in %s): expected %s, the file's is %s; "
                          "the file changed after the tile set was written, or the tile set names the wrong file"
                          % (index, tile.url, tile.position, tile.tileset_url, tile.sha256, actual))


def _digest(url):
    """The sha256 hex digest of a tile, read in chunks where the backend streams."""
    h = hashlib.sha256()
    for chunk in sio.read_chunks(url, CHUNK):
        h.update(chunk)
    return h.hexdigest()
