"""Small URL/path IO helpers shared by the process-fov and merge-results images.

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
import io
import os
from urllib.parse import urlencode
import posixpath
import tempfile
import urllib.error
import urllib.parse
import urllib.request

__all__ = [
    "is_s3", "is_http", "is_remote", "split_s3", "join", "dirname", "basename",
    "read_bytes", "read_text", "write_bytes", "write_text", "exists", "remove",
    "list_prefix", "set_s3_client", "local_path",
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

MAX_FOVS = 1000000


def fov_name(index):
    """FOV index -> manifest name: 17 -> 'fov_017', 1234 -> 'fov_1234'."""
    return "fov_%03d" % int(index)


def parse_fov_ranges(text):
    """'1-3,7,9-12' -> [1, 2, 3, 7, 9, 10, 11, 12] (sorted, de-duplicated).

    Raises ValueError with a readable message on malformed input.
    """
    if text is None or not str(text).strip():
        raise ValueError("empty FOV list")
    out = set()
    for raw in str(text).split(","):
        part = raw.strip()
        if not part:
            raise ValueError("empty item in FOV list %r" % text)
        if "-" in part:
            lo_s, _, hi_s = part.partition("-")
            lo_s, hi_s = lo_s.strip(), hi_s.strip()
            if not (lo_s.isdigit() and hi_s.isdigit()):
                raise ValueError("bad range %r in FOV list %r (expected e.g. 0-3)" % (part, text))
            lo, hi = int(lo_s), int(hi_s)
            if lo > hi:
                raise ValueError("bad range %r in FOV list %r (start > end)" % (part, text))
            if hi - lo + 1 + len(out) > MAX_FOVS:
                raise ValueError("FOV list %r has more than %d FOVs" % (text, MAX_FOVS))
            out.update(range(lo, hi + 1))
        else:
            if not part.isdigit():
                raise ValueError("bad FOV index %r in FOV list %r (expected non-negative integers)"
                                 % (part, text))
            out.add(int(part))
    return sorted(out)


def format_fov_ranges(indices):
    """[1, 2, 3, 7, 9, 10] -> '1-3,7,9-10'."""
    idx = sorted(set(int(i) for i in indices))
    parts = []
    i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        parts.append(str(idx[i]) if i == j else "%d-%d" % (idx[i], idx[j]))
        i = j + 1
    return ",".join(parts)
