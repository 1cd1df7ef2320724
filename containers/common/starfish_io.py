"""Small URL/path IO helpers shared by the process-fov and merge-results images, plus the
one parser of FOV range text (``parse_fov_ranges``) and the readers of the job environment
(``require_env``, ``require_fovs_env``) both scripts use.

Every function takes either a local path, a ``file://`` URL, an ``s3://bucket/key`` URL
or (read-only) an ``http(s)://`` URL.

* boto3 is imported lazily, only when an ``s3://`` URL is actually used, so plain paths
  work on machines without boto3.  Tests (or callers) can inject any object with the
  boto3 S3 client methods used here (get_object, put_object, delete_object,
  head_object, list_objects_v2) via :func:`set_s3_client`.
* Missing objects raise ``FileNotFoundError`` (with ``.filename`` set to the URL), for
  every backend, so callers can report "not found: <url>" uniformly.
* Local writes are atomic: a temp file in the same directory, then ``os.replace``.

Kept compatible with Python 3.6+ (the starfish image's interpreter).
"""
import bisect
import io
import os
import re
from urllib.parse import urlencode
import posixpath
import tempfile
import urllib.error
import urllib.parse
import urllib.request

__all__ = [
    "is_s3", "is_http", "is_remote", "split_s3", "join", "dirname", "basename",
    "read_bytes", "read_text", "write_bytes", "write_text", "exists", "remove",
    "list_prefix", "set_s3_client", "local_path", "INTERMEDIATE_TAGS",
    "fov_name", "FovRanges", "parse_fov_ranges", "format_fov_ranges", "MAX_FOV_INDEX",
    "EnvError", "env_value", "require_env", "require_output_env", "require_fovs_env",
]

_s3_client = None


def set_s3_client(client):
    """Use ``client`` for s3:// URLs instead of a lazily created boto3 client.

    Pass None to go back to the default (boto3) client.
    """
    global _s3_client
    _s3_client = client


def _s3():
    global _s3_client
    if _s3_client is None:
        try:
            import boto3  # noqa: WPS433 (lazy on purpose: not needed for local paths)
        except ImportError:
            raise RuntimeError("boto3 is required for s3:// URLs but is not installed")
        _s3_client = boto3.client("s3")
    return _s3_client


def is_s3(url):
    return str(url).startswith("s3://")


def is_http(url):
    u = str(url)
    return u.startswith("http://") or u.startswith("https://")


def is_remote(url):
    return is_s3(url) or is_http(url)


def local_path(url):
    """Local filesystem path for a plain path or file:// URL (None for remote URLs)."""
    u = str(url)
    if u.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(u).path)
    if is_remote(u):
        return None
    return u


def split_s3(url):
    """'s3://bucket/a/b' -> ('bucket', 'a/b')."""
    if not is_s3(url):
        raise ValueError("not an s3:// URL: %s" % url)
    rest = str(url)[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError("s3 URL without a bucket: %s" % url)
    return bucket, key


def join(base, *parts):
    """Join path/URL components with '/' (or os.path.join for local paths).

    A part that is itself absolute (a URL with a scheme or an absolute local path)
    replaces what came before, like os.path.join.
    """
    out = str(base)
    for part in parts:
        part = str(part)
        if "://" in part or (part.startswith("/") and local_path(out) is not None
                             and not str(out).startswith("file://")):
            out = part
            continue
        if local_path(out) is not None and not out.startswith("file://"):
            out = os.path.join(out, part)
        else:
            out = out.rstrip("/") + "/" + part.lstrip("/")
    return out


def dirname(url):
    u = str(url)
    if local_path(u) is not None and not u.startswith("file://"):
        return os.path.dirname(u)
    scheme, sep, rest = u.partition("://")
    return scheme + sep + posixpath.dirname(rest)


def basename(url):
    return posixpath.basename(str(url).rstrip("/")) if "://" in str(url) else os.path.basename(str(url))


def _not_found(url, detail=None):
    err = FileNotFoundError(2, "not found" + (": %s" % detail if detail else ""), str(url))
    return err


def _is_s3_missing(exc):
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        code = str(resp.get("Error", {}).get("Code", ""))
        return code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket")
    return False


def read_bytes(url):
    u = str(url)
    if is_s3(u):
        bucket, key = split_s3(u)
        try:
            obj = _s3().get_object(Bucket=bucket, Key=key)
        except Exception as exc:  # botocore ClientError and friends
            if _is_s3_missing(exc):
                raise _not_found(u)
            raise
        return obj["Body"].read()
    if is_http(u):
        try:
            with urllib.request.urlopen(u, timeout=120) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404, 410):
                raise _not_found(u, "HTTP %d" % exc.code)
            raise
    path = local_path(u)
    with open(path, "rb") as fh:
        return fh.read()


def read_text(url, encoding="utf-8"):
    return read_bytes(url).decode(encoding)


def write_bytes(url, data, content_type=None, tags=None):
    """Write ``data`` to ``url``; local writes are atomic (temp file + rename).

    ``tags`` (a dict) become S3 object tags; the results bucket's lifecycle rule expires
    objects tagged as intermediates (see INTERMEDIATE_TAGS). Local files have no tags.
    """
    u = str(url)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if is_s3(u):
        bucket, key = split_s3(u)
        kwargs = {"Bucket": bucket, "Key": key, "Body": data}
        if content_type:
            kwargs["ContentType"] = content_type
        if tags:
            kwargs["Tagging"] = urlencode(sorted(tags.items()))
        _s3().put_object(**kwargs)
        return
    if is_http(u):
        raise ValueError("cannot write to an http(s) URL: %s" % u)
    path = local_path(u)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text(url, text, content_type=None, tags=None):
    write_bytes(url, text.encode("utf-8"), content_type=content_type, tags=tags)


# Per-FOV tables and error records: the infra's lifecycle rule expires objects carrying this tag.
INTERMEDIATE_TAGS = {"starfish:lifecycle": "intermediate"}


def exists(url):
    u = str(url)
    if is_s3(u):
        bucket, key = split_s3(u)
        try:
            _s3().head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:
            if _is_s3_missing(exc):
                return False
            raise
    if is_http(u):
        req = urllib.request.Request(u, method="HEAD")
        try:
            with urllib.request.urlopen(req, timeout=60):
                return True
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404, 410):
                return False
            raise
    return os.path.exists(local_path(u))


def remove(url):
    """Delete ``url`` if it exists (no error if it does not)."""
    u = str(url)
    if is_s3(u):
        bucket, key = split_s3(u)
        try:
            _s3().delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if not _is_s3_missing(exc):
                raise
        return
    if is_http(u):
        raise ValueError("cannot delete an http(s) URL: %s" % u)
    try:
        os.unlink(local_path(u))
    except FileNotFoundError:
        pass


def list_prefix(url):
    """Names (basenames) of the objects/files directly under the "directory" ``url``.

    Returns a sorted list of names; an absent directory/prefix gives [].
    """
    u = str(url)
    if is_s3(u):
        bucket, key = split_s3(u)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        names = []
        kwargs = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
        while True:
            resp = _s3().list_objects_v2(**kwargs)
            for obj in resp.get("Contents", []) or []:
                name = obj["Key"][len(prefix):]
                if name:
                    names.append(name)
            if resp.get("IsTruncated") and resp.get("NextContinuationToken"):
                kwargs["ContinuationToken"] = resp["NextContinuationToken"]
            else:
                break
        return sorted(names)
    if is_http(u):
        raise ValueError("cannot list an http(s) URL: %s" % u)
    path = local_path(u)
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if e.is_file())
    except FileNotFoundError:
        return []


class FakeS3Client(object):
    """In-memory stand-in for a boto3 S3 client (used by tests; needs no boto3).

    Supports the calls this module makes. Missing keys raise an exception carrying a
    botocore-like ``response`` dict, so the not-found mapping is exercised.
    """

    class _Missing(Exception):
        def __init__(self, key):
            Exception.__init__(self, "NoSuchKey: %s" % key)
            self.response = {"Error": {"Code": "NoSuchKey", "Message": key}}

    def __init__(self, page_size=1000):
        self.objects = {}
        self.tagging = {}
        self.page_size = page_size
        self.calls = []

    def get_object(self, Bucket, Key):
        self.calls.append(("get_object", Bucket, Key))
        try:
            data = self.objects[(Bucket, Key)]
        except KeyError:
            raise self._Missing(Key)
        return {"Body": io.BytesIO(data)}

    def put_object(self, Bucket, Key, Body, ContentType=None, Tagging=None):
        self.calls.append(("put_object", Bucket, Key))
        if Tagging is not None:
            self.tagging[(Bucket, Key)] = Tagging
        self.objects[(Bucket, Key)] = bytes(Body)
        return {}

    def head_object(self, Bucket, Key):
        self.calls.append(("head_object", Bucket, Key))
        if (Bucket, Key) not in self.objects:
            raise self._Missing(Key)
        return {}

    def delete_object(self, Bucket, Key):
        self.calls.append(("delete_object", Bucket, Key))
        self.objects.pop((Bucket, Key), None)
        return {}

    def list_objects_v2(self, Bucket, Prefix="", Delimiter=None, ContinuationToken=None):
        self.calls.append(("list_objects_v2", Bucket, Prefix))
        keys = sorted(k for (b, k) in self.objects if b == Bucket and k.startswith(Prefix)
                      and (not Delimiter or Delimiter not in k[len(Prefix):]))
        start = int(ContinuationToken or 0)
        page = keys[start:start + self.page_size]
        resp = {"Contents": [{"Key": k} for k in page], "IsTruncated": start + self.page_size < len(keys)}
        if resp["IsTruncated"]:
            resp["NextContinuationToken"] = str(start + self.page_size)
        return resp


# ---------------------------------------------------------------------------------------
# FOV naming and compact range lists (shared by process-fov and merge-results)
#
# The one Python reader of the range text the launcher writes into STARFISH_FOVS
# (src/run/fov-ranges.ts is the TypeScript one; the grammar and the bound are the same).

MAX_FOV_INDEX = 1000000
_RANGE_RE = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")


def fov_name(index):
    """FOV index -> manifest name: 17 -> 'fov_017', 1234 -> 'fov_1234'."""
    return "fov_%03d" % int(index)


class FovRanges(object):
    """A set of FOV indices held as sorted, disjoint inclusive ranges.

    A read-only sequence in ascending order: ``len()``, ``ranges[i]`` (the i-th FOV, what
    array child i processes; i >= 0 only) and ``fov in ranges`` cost O(log number of ranges)
    and never expand the ranges; iterating yields every index. ``str()`` is the canonical
    range text (what src/run/fov-ranges.ts formatRanges writes for the same set).
    """

    __slots__ = ("ranges", "_starts", "_before", "_len")

    def __init__(self, ranges):
        merged = []
        for lo, hi in sorted((int(a), int(b)) for a, b in ranges):
            if merged and lo <= merged[-1][1] + 1:  # overlapping or adjacent: one range
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        self.ranges = tuple(merged)
        self._starts = [lo for lo, _ in merged]
        self._before = []  # FOVs in the ranges before range k
        total = 0
        for lo, hi in merged:
            self._before.append(total)
            total += hi - lo + 1
        self._len = total

    def __len__(self):
        return self._len

    def __getitem__(self, i):
        if not isinstance(i, int) or isinstance(i, bool):
            raise TypeError("FOV ranges are indexed by int, not %s" % type(i).__name__)
        if i < 0 or i >= self._len:
            raise IndexError("index %d is beyond %s (%d FOVs)" % (i, self, self._len))
        k = bisect.bisect_right(self._before, i) - 1
        return self.ranges[k][0] + (i - self._before[k])

    def __iter__(self):
        for lo, hi in self.ranges:
            for fov in range(lo, hi + 1):
                yield fov

    def __contains__(self, fov):
        k = bisect.bisect_right(self._starts, fov) - 1
        return k >= 0 and fov <= self.ranges[k][1]

    def __eq__(self, other):
        return isinstance(other, FovRanges) and self.ranges == other.ranges

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.ranges)

    def __str__(self):
        return ",".join(str(lo) if lo == hi else "%d-%d" % (lo, hi) for lo, hi in self.ranges)

    def __repr__(self):
        return "FovRanges(%r)" % str(self)


def parse_fov_ranges(text):
    """Range text -> FovRanges: '1-3,7,9-12' holds 1, 2, 3, 7, 9, 10, 11, 12.

    Items are a FOV index or an inclusive ``low-high`` range, separated by commas (spaces
    around an item are ignored); order and overlaps do not matter. Raises ValueError with a
    one-line reason (without the variable's name) on malformed input.
    """
    if text is None or not str(text).strip():
        raise ValueError("no FOVs given")
    ranges = []
    for raw in str(text).split(","):
        part = raw.strip()
        m = _RANGE_RE.match(part)
        if not m:
            raise ValueError(("%r is not a FOV index or range" % part) if part else
                             "an empty item (a comma too many) is not a FOV index or range")
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else int(m.group(2))
        if hi < lo:
            raise ValueError("the range %r runs backwards; write it low-high, like %d-%d" % (part, hi, lo))
        if hi > MAX_FOV_INDEX:
            raise ValueError("FOV %d is beyond any experiment this tool can run (%d at most)"
                             % (hi, MAX_FOV_INDEX))
        ranges.append((lo, hi))
    return FovRanges(ranges)


def format_fov_ranges(indices):
    """[1, 2, 3, 7, 9, 10] -> '1-3,7,9-10'."""
    return str(FovRanges((i, i) for i in indices))


# ---------------------------------------------------------------------------------------
# the job environment (the contract is in containers/README.md)

# What each variable looks like, for "is not set" messages.
ENV_EXAMPLES = {
    "STARFISH_RUN_ID": "261125-k3f9",
    "STARFISH_EXPERIMENT": "s3://lab-data/iss/experiment.json",
    "STARFISH_RECIPE": "s3://lab-starfish-results/runs/261125-k3f9/inputs/recipe.py",
    "STARFISH_FOVS": "0-9999 (or 1-3,7,9-12)",
    "STARFISH_FOV_OUTPUT": "s3://lab-starfish-results/outputs/261125-k3f9/fovs",
    "STARFISH_RESULTS_OUTPUT": "s3://lab-starfish-results/outputs/261125-k3f9/results",
}

# Variables of the previous contract, by the variable that replaced them: an image newer than
# its launcher (or older) says so instead of only "not set".
REPLACED_ENV = {
    "STARFISH_FOVS": ("STARFISH_FOV_OFFSET", "STARFISH_FOV_LIST", "STARFISH_EXPECTED_FOVS"),
    "STARFISH_FOV_OUTPUT": ("STARFISH_OUTPUT",),
    "STARFISH_RESULTS_OUTPUT": ("STARFISH_OUTPUT",),
}


class EnvError(ValueError):
    """A missing or malformed environment variable; the scripts exit 2 with its message."""


def env_value(environ, name):
    """The stripped value of ``name``, or None when unset or blank."""
    value = environ.get(name)
    if value is None or not str(value).strip():
        return None
    return str(value).strip()


def require_env(environ, name):
    """The value of ``name``; EnvError naming it with an example when unset or blank."""
    value = env_value(environ, name)
    if value is not None:
        return value
    message = "%s is not set; example: %s=%s" % (name, name, ENV_EXAMPLES[name])
    stale = [old for old in REPLACED_ENV.get(name, ()) if env_value(environ, old) is not None]
    if stale:
        message += " (%s %s no longer read: the launcher and this image disagree on the contract)" % (
            " and ".join(stale), "is" if len(stale) == 1 else "are")
    raise EnvError(message)


def require_output_env(environ, name):
    """A required output location, without a trailing slash."""
    return require_env(environ, name).rstrip("/") or "/"


def require_fovs_env(environ, name="STARFISH_FOVS"):
    """The FovRanges in ``name``; EnvError naming it with an example when unset or malformed."""
    text = require_env(environ, name)
    try:
        return parse_fov_ranges(text)
    except ValueError as exc:
        raise EnvError("%s must be FOV indices and ranges like 0-9999 or 1-3,7,9-12, got %r: %s"
                       % (name, text, exc))
