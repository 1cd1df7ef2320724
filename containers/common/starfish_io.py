"""Small URL/path IO helpers shared by the process-fov and merge-results images, plus the
one parser of FOV range text (``parse_fov_ranges``) and the readers of the job environment
(``require_env``, ``require_fovs_env``) both scripts use.

Every function takes either a local path, a ``file://`` URL, an ``s3://bucket/key`` URL
or (read-only) an ``https://`` URL.

* https reads follow the URL policy (the same rules as src/run/url-policy.ts): the host's
  addresses must all be public internet addresses (no loopback, link-local metadata, private,
  shared, reserved, documentation, ULA or IPv4-mapped forms), the name is resolved once and
  the connection pinned to the checked address (TLS still verifies the host name), redirects
  are not followed, and ``STARFISH_HTTPS_HOSTS`` (comma-separated, ``*.lab.org`` for a whole
  domain) narrows the hosts further when set. ``http://`` and other schemes are refused with
  :class:`UrlRefused`.
* References inside experiment JSON go through :func:`resolve_reference`: ``file://`` URLs and
  absolute paths only when the experiment itself is local; and inside :func:`local_files`
  (False) no local file is read at all, so a remote experiment cannot make a recipe that
  follows its references through this module read the machine's files.

* boto3 is imported lazily, only when an ``s3://`` URL is actually used, so plain paths
  work on machines without boto3.  Tests (or callers) can inject any object with the
  boto3 S3 client methods used here (get_object, put_object, delete_object,
  head_object, list_objects_v2) via :func:`set_s3_client`.
* Missing objects raise ``FileNotFoundError`` (with ``.filename`` set to the URL), for
  every backend, so callers can report "not found: <url>" uniformly.
* Local writes are atomic: a temp file in the same directory, flushed to the disk, then
  ``os.replace``; a write that fails (a full disk: ENOSPC) removes the temp file and raises the
  ``OSError``, so a file is whole or absent. :func:`write_failure` words such an error for the
  scientist, with the next step.

Kept compatible with Python 3.6+ (the starfish image's interpreter).
"""
import bisect
import contextlib
import errno
import http.client
import io
import ipaddress
import json
import math
import os
import re
import socket
import ssl
import sys
import time
from urllib.parse import urlencode
import posixpath
import tempfile
import urllib.parse

__all__ = [
    "is_s3", "is_http", "is_remote", "split_s3", "join", "dirname", "basename",
    "read_bytes", "read_chunks", "read_text", "write_bytes", "write_text", "write_failure", "exists", "remove",
    "list_prefix", "set_s3_client", "local_path", "INTERMEDIATE_TAGS",
    "fov_name", "FovRanges", "parse_fov_ranges", "format_fov_ranges", "MAX_FOV_INDEX",
    "csv_text", "EnvError", "env_value", "require_env", "require_output_env", "require_fovs_env",
    "require_fov_plan_env",
    "UrlRefused", "address_refusal", "check_https_url", "resolve_https", "https_get",
    "resolve_reference", "local_files", "set_https_test_options", "PinnedHTTPSConnection",
    "report_fov_facts", "registration_shift_px", "take_fov_facts", "REGISTRATION_SHIFT",
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
    if _scheme_of(u) == "https" and u.startswith("https://"):
        return https_get(u)
    path = _readable_path(u)
    with open(path, "rb") as fh:
        return fh.read()


def read_chunks(url, size=1 << 20):
    """The bytes of ``url`` in pieces of at most ``size``: local files and S3 objects stream
    (a large tile is never held whole); https:// is read whole under https_get's size cap.
    Raises as read_bytes does (FileNotFoundError, UrlRefused) before yielding anything."""
    u = str(url)
    if is_s3(u):
        bucket, key = split_s3(u)
        try:
            body = _s3().get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as exc:
            if _is_s3_missing(exc):
                raise _not_found(u)
            raise
        return iter(lambda: body.read(size), b"")
    if _scheme_of(u) == "https" and u.startswith("https://"):
        return iter([https_get(u)])
    fh = open(_readable_path(u), "rb")
    return _closing_chunks(fh, size)


def _closing_chunks(fh, size):
    with fh:
        for chunk in iter(lambda: fh.read(size), b""):
            yield chunk


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
            # A full disk may only say so when the data reaches it: before the rename, not after.
            fh.flush()
            os.fsync(fh.fileno())
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


def describe_os_error(exc):
    """``No space left on device (ENOSPC)``: the system's words and the errno's name."""
    code = errno.errorcode.get(getattr(exc, "errno", None) or 0)
    words = getattr(exc, "strerror", None) or " ".join(str(exc).split()) or type(exc).__name__
    return "%s (%s)" % (words, code) if code else words


_NEXT_STEP = {
    errno.ENOSPC: "free space in STARFISH_HOME",
    errno.EDQUOT: "free space within your disk quota in STARFISH_HOME",
    errno.EACCES: "make %s writable",
    errno.EPERM: "make %s writable",
    errno.EROFS: "move STARFISH_HOME to a writable disk (%s is read-only)",
}


def write_failure(url, exc, run_id=None):
    """The reason a job could not write ``url``, with what to do next, e.g.
    ``could not write spots.png to /data/outputs/R/results: No space left on device (ENOSPC);
    free space in STARFISH_HOME and run /starfish retry R``."""
    folder = dirname(str(url))
    step = _NEXT_STEP.get(getattr(exc, "errno", None), "check the disk that holds %s")
    step = step % folder if "%s" in step else step
    return "could not write %s to %s: %s; %s and run /starfish retry %s" % (
        basename(str(url)), folder, describe_os_error(exc), step, run_id or "<run id>")


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
    if _scheme_of(u) == "https" and u.startswith("https://"):
        try:
            https_get(u, method="HEAD")
            return True
        except FileNotFoundError:
            return False
    return os.path.exists(_readable_path(u))


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


# ---------------------------------------------------------------------------------------
# The URL policy (the same rules, ranges and sentences as src/run/url-policy.ts)

class UrlRefused(Exception):
    """A location the URL policy refuses; ``str()`` is a sentence for the scientist."""


EXAMPLE_URL = "https://example.org/iss/experiment.json"
_PUBLIC_ONLY = "Inputs are read only from servers on the public internet"
_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):")
_HOST_RE = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")

_LOOPBACK = "a loopback address (this machine itself)"
_LINK_LOCAL = "a link-local address (where cloud instance and container metadata are served)"
_PRIVATE = "a private network address (RFC 1918)"
_DOCUMENTATION = "a documentation address (reserved for examples, never a real server)"


def _blocks(pairs):
    return [(ipaddress.ip_network(cidr), what) for cidr, what in pairs]


_V4_BLOCKS = _blocks([
    ("0.0.0.0/8", 'an unspecified address (0.0.0.0/8, "this host")'),
    ("10.0.0.0/8", _PRIVATE),
    ("100.64.0.0/10", "a shared address (carrier-grade NAT, 100.64.0.0/10), not on the public internet"),
    ("127.0.0.0/8", _LOOPBACK),
    ("169.254.0.0/16", _LINK_LOCAL),
    ("172.16.0.0/12", _PRIVATE),
    ("192.0.0.0/24", "an IETF protocol address (192.0.0.0/24), not on the public internet"),
    ("192.0.2.0/24", _DOCUMENTATION),
    ("192.88.99.0/24", "a reserved address (the retired 6to4 relays, 192.88.99.0/24)"),
    ("192.168.0.0/16", _PRIVATE),
    ("198.18.0.0/15", "a benchmarking address (198.18.0.0/15), not on the public internet"),
    ("198.51.100.0/24", _DOCUMENTATION),
    ("203.0.113.0/24", _DOCUMENTATION),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address (240.0.0.0/4)"),
])

_V6_BLOCKS = _blocks([
    ("::/128", "the unspecified IPv6 address"),
    ("::1/128", "the IPv6 loopback address (this machine itself)"),
    ("64:ff9b:1::/48", "a local-use NAT64 address (64:ff9b:1::/48), not on the public internet"),
    ("::/96", "an IPv4-compatible IPv6 address (a retired form)"),
    ("fc00::/7", "an IPv6 unique local address (fc00::/7, a private network)"),
    ("fe80::/10", "an IPv6 link-local address (fe80::/10; cloud metadata is served there too)"),
    ("fec0::/10", "an IPv6 site-local address (fec0::/10, a retired private range)"),
    ("ff00::/8", "an IPv6 multicast address"),
    ("2001::/32", "a Teredo tunnel address (2001::/32)"),
    ("2001:db8::/32", _DOCUMENTATION),
    ("2001::/23", "an IETF protocol IPv6 address (2001::/23), not on the public internet"),
    ("2002::/16", "a 6to4 tunnel address (2002::/16)"),
    ("3fff::/20", _DOCUMENTATION),
])

# IPv6 forms carrying an IPv4 address in their last 32 bits, judged by that address
_V6_EMBEDDING = _blocks([("::ffff:0:0/96", "IPv4-mapped"), ("64:ff9b::/96", "NAT64")])
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


def _first_block(ip, blocks):
    for net, what in blocks:
        if ip in net:
            return what
    return None


def _v6_refusal(ip):
    embedding = _first_block(ip, _V6_EMBEDDING)
    if embedding:
        v4 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        what = _first_block(v4, _V4_BLOCKS)
        return what and "the %s IPv6 form of %s, %s" % (embedding, v4, what)
    what = _first_block(ip, _V6_BLOCKS)
    if what:
        return what
    if ip not in _GLOBAL_UNICAST:
        return "a reserved IPv6 address (outside the global unicast range 2000::/3)"
    return None


def address_refusal(address):
    """Why ``address`` may not be fetched from (the range it is in), or None for a public
    internet address. Anything that is not a plain IPv4 or IPv6 address is refused."""
    text = str(address)
    if "%" in text:
        return "a scoped IPv6 address (a zone index names a local network interface)"
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return "not an IP address"
    if ip.version == 4:
        return _first_block(ip, _V4_BLOCKS)
    return _v6_refusal(ip)


def _same_address(a, b):
    try:
        return ipaddress.ip_address(str(a)) == ipaddress.ip_address(str(b))
    except ValueError:
        return False


def _refusal_for(address, test_only_addresses):
    if any(_same_address(allowed, address) for allowed in test_only_addresses):
        return None
    return address_refusal(address)


def _ipv4_number(part):
    """One part of a WHATWG IPv4 host: decimal, 0x hex or 0-prefixed octal; None if not one."""
    radix = 10
    if len(part) >= 2 and part[:2] in ("0x", "0X"):
        part, radix = part[2:], 16
    elif len(part) >= 2 and part[0] == "0":
        part, radix = part[1:], 8
    if part == "":
        return 0
    try:
        return int(part, radix) if re.match(r"^[0-9a-fA-F]+$", part) else None
    except ValueError:
        return None


def _ends_in_number(host):
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    return bool(re.match(r"^[0-9]+$", last)) or bool(re.match(r"^0[xX][0-9a-fA-F]*$", last))


def _parse_ipv4(host):
    """The WHATWG IPv4 parser (2130706433, 0177.0.0.1, 0x7f.1, 127.1 are all 127.0.0.1);
    None when the host ends in a number but is no IPv4 address (then it is no valid host)."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    numbers = [_ipv4_number(p) for p in parts] if len(parts) <= 4 and "" not in parts else [None]
    if None in numbers or any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n * 256 ** (3 - i)
    return str(ipaddress.IPv4Address(value))


def _normalize_host(raw):
    """The host as WHATWG URL reads it: percent-decoded, IDNA-mapped (full-width digits become
    ASCII), lower case, without a trailing dot, any IPv4 spelling as the dotted address.
    None when it is no valid host."""
    host = urllib.parse.unquote(raw)
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host)) if "%" not in host else None
        except ValueError:
            return None
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not _HOST_RE.match(host):
        return None
    return _parse_ipv4(host) if _ends_in_number(host) else host


def _allowed_hosts_from_env(environ=None):
    raw = (os.environ if environ is None else environ).get("STARFISH_HTTPS_HOSTS", "")
    hosts = [h.strip() for h in raw.split(",") if h.strip()]
    return hosts or None


def _host_allowed(host, allowed):
    for entry in allowed:
        e = entry.strip().lower().rstrip(".")
        if (e.startswith("*.") and host.endswith(e[1:])) or host == e:
            return True
    return False


def _example(allowed_hosts):
    if allowed_hosts:
        return "https://%s/iss/experiment.json" % re.sub(r"^\*\.", "data.", allowed_hosts[0])
    return EXAMPLE_URL


class _Target(object):
    """An https URL whose host was checked: where the connection goes and what it asks for."""
    __slots__ = ("url", "host", "port", "path", "address")

    def __init__(self, url, host, port, path, address=None):
        self.url, self.host, self.port, self.path, self.address = url, host, port, path, address


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _split_https(url, example):
    """(host as written, port, path) of an https URL; UrlRefused for anything else."""
    if _scheme_of(url) != "https":
        raise UrlRefused("%s is refused: inputs are read over https:// only. Example: %s" % (url, example))
    if not url.startswith("https://"):
        raise UrlRefused("%s is refused: write the URL as https://<host>/<path>, in lower case with two "
                         "slashes, e.g. %s" % (url, example))
    invalid = UrlRefused("%s is not a valid URL. Example: %s" % (url, example))
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or 443
    except ValueError:
        raise invalid
    if "@" in parts.netloc:
        raise UrlRefused("%s is refused: it carries a user name or password, which inputs may not. Give a "
                         "URL without credentials, e.g. %s" % (url, example))
    if not parts.hostname or "\\" in url or any(c.isspace() for c in url):
        raise invalid
    return parts.hostname, port, (parts.path or "/") + ("?" + parts.query if parts.query else "")


def check_https_url(url, allowed_hosts=None, test_only_addresses=()):
    """The checks that need no network, for an https:// URL: it parses, carries no credentials,
    its host is on the allowlist (when there is one), and a literal address is a public one.
    Returns the checked target; raises UrlRefused."""
    example = _example(allowed_hosts)
    raw_host, port, path = _split_https(str(url), example)
    host = _normalize_host(raw_host)
    if host is None:
        raise UrlRefused("%s is not a valid URL. Example: %s" % (url, example))
    if allowed_hosts and not _host_allowed(host, allowed_hosts):
        raise UrlRefused("%s is refused: this deployment reads https inputs only from %s. Example: %s"
                         % (url, ", ".join(allowed_hosts), example))
    if _is_ip(host):
        what = _refusal_for(host, test_only_addresses)
        if what:
            raise UrlRefused("%s is refused: %s is %s. %s, e.g. %s" % (url, host, what, _PUBLIC_ONLY, example))
        return _Target(url, host, port, path, host)
    return _Target(url, host, port, path)


def _system_resolve(host):
    seen = []
    for info in socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM):
        address = info[4][0]
        if address not in seen:
            seen.append(address)
    return seen


def resolve_https(url, allowed_hosts=None, resolve=None, test_only_addresses=()):
    """check_https_url, then the host resolved once (``resolve(host)`` -> addresses; the system
    resolver by default): every address must be public, and the first one is where the
    connection goes. Raises UrlRefused."""
    target = check_https_url(url, allowed_hosts, test_only_addresses)
    if target.address is not None:
        return target
    example = _example(allowed_hosts)
    try:
        answers = list((resolve or _system_resolve)(target.host))
    except (socket.error, UnicodeError) as exc:
        raise UrlRefused("%s could not be read: the name %s was not found (%s). Check the URL, e.g. %s"
                         % (url, target.host, exc, example))
    if not answers:
        raise UrlRefused("%s could not be read: the name %s has no address. Check the URL, e.g. %s"
                         % (url, target.host, example))
    for address in answers:
        what = _refusal_for(address, test_only_addresses)
        if what:
            raise UrlRefused("%s is refused: %s resolves to %s, which is %s. %s, e.g. %s"
                             % (url, target.host, address, what, _PUBLIC_ONLY, example))
    target.address = answers[0]
    return target


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to ``host`` that connects to ``address`` (the address the policy
    checked) instead of resolving ``host`` again; TLS still sends ``host`` as SNI and verifies
    the certificate against it, and the Host header is ``host``."""

    def __init__(self, host, address, port, timeout, context):
        http.client.HTTPSConnection.__init__(self, host, port, timeout=timeout, context=context)
        self.pinned_address = address
        self.pinned_context = context

    def connect(self):
        sock = socket.create_connection((self.pinned_address, self.port), self.timeout)
        try:
            self.sock = self.pinned_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


_https_test_options = {"resolve": None, "context": None, "test_only_addresses": ()}


def set_https_test_options(resolve=None, context=None, test_only_addresses=()):
    """Tests only: the resolver, TLS context and admitted test addresses that read_bytes and
    exists use for https. Call with no arguments to go back to the defaults."""
    _https_test_options.update(resolve=resolve, context=context, test_only_addresses=tuple(test_only_addresses))


MAX_HTTPS_BYTES = 256 << 20
HTTPS_TOTAL_SECONDS = 600


def https_get(url, method="GET", allowed_hosts=None, resolve=None, context=None, test_only_addresses=(),
              timeout=120, max_bytes=MAX_HTTPS_BYTES, total_seconds=HTTPS_TOTAL_SECONDS):
    """GET (or HEAD) an https URL under the policy: resolved once, every address public, the
    connection pinned to the checked address, no redirects. Returns the body. 403/404/410
    raise FileNotFoundError; other failures IOError; refusals UrlRefused."""
    options = _https_test_options
    if allowed_hosts is None:
        allowed_hosts = _allowed_hosts_from_env()
    target = resolve_https(url, allowed_hosts, resolve or options["resolve"],
                           tuple(test_only_addresses) or options["test_only_addresses"])
    context = context or options["context"] or ssl.create_default_context()
    conn = PinnedHTTPSConnection(target.host, target.address, target.port, timeout, context)
    try:
        conn.request(method, target.path, headers={"User-Agent": "starfish-chatops", "Accept": "*/*"})
        resp = conn.getresponse()
        status = resp.status
        if 300 <= status < 400:
            location = str(resp.getheader("Location", "(no Location)"))[:200]
            raise UrlRefused("%s answered with a redirect (HTTP %d) to %s; redirects are not followed, so that "
                             "a public server cannot send the reader to an internal address. Give the final URL "
                             "instead." % (url, status, location))
        if status in (403, 404, 410):
            raise _not_found(url, "HTTP %d" % status)
        if not 200 <= status < 300:
            raise IOError("HTTP %d reading %s" % (status, url))
        return _read_capped(resp, url, max_bytes, time.monotonic() + total_seconds)
    finally:
        conn.close()


def _read_capped(resp, url, max_bytes, deadline):
    """The body, at most max_bytes, within the deadline: a hostile server can neither fill the
    job's memory nor hold it by sending slowly (the socket timeout is per read)."""
    chunks, total = [], 0
    while True:
        if time.monotonic() > deadline:
            raise IOError("reading %s took too long; stage the file into the bucket instead" % url)
        chunk = resp.read(1 << 16)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise IOError("%s is larger than %d MiB, the limit for an https input; stage it into the bucket "
                          "first" % (url, max_bytes >> 20))
        chunks.append(chunk)


def _scheme_of(url):
    m = _SCHEME_RE.match(str(url))
    return m.group(1).lower() if m else None


# whether local files (paths and file:// URLs) may be read now: see local_files()
_local_files = [True]


@contextlib.contextmanager
def local_files(allowed):
    """Within this block, read_bytes/read_text/exists read local files only if ``allowed``.
    process-fov runs a remote experiment's checks and recipe with local_files(False): whatever
    the experiment refers to, nothing on the job's own disk is read through this module."""
    before = _local_files[0]
    _local_files[0] = bool(allowed)
    try:
        yield
    finally:
        _local_files[0] = before


def _readable_path(url):
    """The local path ``url`` names, if reading it is allowed; UrlRefused otherwise."""
    u = str(url)
    scheme = _scheme_of(u)
    if scheme == "http":
        raise UrlRefused("%s is refused: http:// is not read, because anyone on the way can change what it "
                         "returns. Use https://, e.g. %s" % (u, EXAMPLE_URL))
    if scheme == "https":
        _split_https(u, EXAMPLE_URL)  # raises: https:// in another spelling
    if scheme not in (None, "file"):
        raise UrlRefused("%s is refused: %s: URLs are not inputs. Use an https:// URL, e.g. %s"
                         % (u, scheme, EXAMPLE_URL))
    if not _local_files[0]:
        raise UrlRefused("%s is refused: this job reads a remote experiment, so it reads no file of the machine "
                         "it runs on. Refer to files next to the experiment with a relative path, e.g. "
                         "primary-fov_000.json" % u)
    return local_path(u)


def resolve_reference(base, ref, local_mode):
    """The location a reference inside experiment JSON stands for: ``ref`` as written in the
    file ``base``. https:// (checked without resolving; resolved and pinned when read) and
    s3:// (the job's role decides) may be named anywhere; file:// URLs and absolute paths
    only when ``local_mode`` (the experiment itself is a local path); http:// and other
    schemes never. Relative references are joined to ``base``'s folder. Raises UrlRefused."""
    r = str(ref)
    scheme = _scheme_of(r)
    if scheme == "https":
        check_https_url(r, _allowed_hosts_from_env())
        return r
    if scheme == "s3":
        return r
    if scheme == "file" or (scheme is None and (r.startswith("/") or r.startswith("\\"))):
        if local_mode:
            return r if scheme else join(dirname(base), r)
        raise UrlRefused("%s is refused: a remote experiment may not refer to files on the machine that reads "
                         "it (file:// URLs and absolute paths). Refer to files next to it with a relative path, "
                         "e.g. primary-fov_000.json" % r)
    if scheme is not None:
        _readable_path(r)  # raises, naming the scheme
    return join(dirname(base), r)


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
# job-written text in the CSV files a person opens

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FORMULA = ("=", "+", "-", "@")  # what a spreadsheet would run as a formula


def csv_text(value, limit):
    """Text a recipe or a job wrote, as one CSV cell a spreadsheet shows and never runs: one line,
    at most ``limit`` characters, a leading = + - @ made literal with a quote unless it is a
    number. (csv.writer adds the quoting of commas and quotes.)"""
    s = one_line_text(value, limit)
    if s[:1] in _FORMULA and not _parses_as_number(s):
        s = "'" + s
    return s


def _parses_as_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------
# the job environment (the contract is in containers/README.md)

# What each variable looks like, for "is not set" messages.
ENV_EXAMPLES = {
    "STARFISH_RUN_ID": "261125-k3f9",
    "STARFISH_EXPERIMENT": "s3://lab-data/iss/experiment.json",
    "STARFISH_RECIPE": "s3://lab-starfish-results/runs/261125-k3f9/inputs/recipe.py",
    "STARFISH_FOVS": "0-9999 (or 1-3,7,9-12)",
    "STARFISH_FOVS_AT": "s3://lab-starfish-results/runs/261125-k3f9/inputs/fovs-r0-0.json",
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


# The launcher's FOV lists are at most 1,000,000 characters of range text (src/run/plan.ts).
MAX_FOVS_OBJECT_BYTES = 2 << 20


# A packed child runs at most this many FOVs (the control plane keeps an array's children at
# 10,000 at most; a chunk this long is already hours of work for one container).
MAX_PER_CHILD = 10000
PER_CHILD_EXAMPLE = '{"fovs": "0-9999", "perChild": 15}'


def require_fovs_env(environ, name="STARFISH_FOVS"):
    """The FovRanges of this job: ``name`` (range text, for a job started by hand) or the "fovs"
    of the JSON object at ``name``_AT (what the launcher sends: a FOV list grows with the
    experiment, and Batch caps a job's environment at 8,192 characters). EnvError naming the
    variable, with an example, when neither or both are set or the list is malformed.
    The object's "perChild" is not read here (merge-results has no use for it): see
    require_fov_plan_env."""
    return _fovs_env(environ, name)[0]


def require_fov_plan_env(environ, name="STARFISH_FOVS"):
    """(FovRanges, FOVs per child) of a FOV job: the list as require_fovs_env reads it, and the
    "perChild" of the object at ``name``_AT (1 when absent, or when the list came as range text
    in ``name``: a job started by hand runs one FOV per child). EnvError naming the object and
    the field, with an example, when "perChild" is not a whole number from 1 to MAX_PER_CHILD."""
    fovs, obj, at = _fovs_env(environ, name)
    if obj is None:
        return fovs, 1
    return fovs, _per_child(name + "_AT", at, obj)


def _fovs_env(environ, name):
    """(FovRanges, the launcher's object or None, its URL or None)."""
    at_name = name + "_AT"
    text, source = env_value(environ, name), name
    at = env_value(environ, at_name)
    obj = None
    if text is not None and at is not None:
        raise EnvError("%s and %s are both set; set one: %s=%s or %s=%s"
                       % (name, at_name, name, ENV_EXAMPLES[name], at_name, ENV_EXAMPLES[at_name]))
    if text is None and at is not None:
        obj = _fovs_from_object(at_name, at)
        text, source = obj["fovs"], 'the "fovs" of %s=%s' % (at_name, at)
    if text is None:
        require_env(environ, name)  # raises, naming it and any variable it replaced
    try:
        return parse_fov_ranges(text), obj, at
    except ValueError as exc:
        raise EnvError("%s must be FOV indices and ranges like 0-9999 or 1-3,7,9-12, got %r: %s"
                       % (source, text[:200], exc))


def _fovs_from_object(name, url):
    """The object the launcher wrote at ``url`` (named by variable ``name``), with its "fovs" text
    checked to be a string."""
    try:
        data = read_bytes(url)
    except (OSError, UrlRefused) as exc:
        raise EnvError("%s=%s cannot be read: %s" % (name, url, exc))
    if len(data) > MAX_FOVS_OBJECT_BYTES:
        raise EnvError("%s=%s is %d bytes; a FOV list object is at most %d"
                       % (name, url, len(data), MAX_FOVS_OBJECT_BYTES))
    try:
        obj = json.loads(data.decode("utf-8"))
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or not isinstance(obj.get("fovs"), str):
        raise EnvError('%s=%s is not a FOV list object; expected {"fovs": "0-9999"} or %s'
                       % (name, url, PER_CHILD_EXAMPLE))
    return obj


def _per_child(name, url, obj):
    """The object's "perChild": 1 when absent; else a whole number from 1 to MAX_PER_CHILD."""
    if "perChild" not in obj:
        return 1
    k = obj["perChild"]
    # JSON's true is Python's True, an int: refused like 2.5 and "15"
    if isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= MAX_PER_CHILD:
        return k
    raise EnvError('the "perChild" of %s=%s must be a whole number of FOVs from 1 to %d, got %s; '
                   "example: %s" % (name, url, MAX_PER_CHILD, json.dumps(k)[:40], PER_CHILD_EXAMPLE))


# ---------------------------------------------------------------------------------------
# what a recipe reports about its FOV (containers/README.md, "Recipe facts"): a few named
# numbers, such as the registration shift, that process-fov writes into the FOV's metrics file.
# They are the recipe's word, so they are checked where they are written (process-fov) and again
# where they are read (merge-results), and they are only ever shown: no decision about the run
# looks at them.

REGISTRATION_SHIFT = "registration_shift_px"
MAX_REGISTRATION_SHIFT_PX = 100000.0   # px; a tile is a few thousand pixels wide
FACT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_FACTS = 8
MAX_FACT_PROBLEMS = 20
UNLISTED_PROBLEM = "(not listed: too many)"
MAX_FACT_VALUE = 1e12
FACT_EXAMPLE = "report_fov_facts(registration_shift_px=1.7)"
_reported = {}


def report_fov_facts(**facts):
    """For a recipe: numbers about the FOV it is processing, e.g.
    ``report_fov_facts(registration_shift_px=registration_shift_px(transforms_list))``.

    process-fov writes them to the FOV's ``fov_NNN.metrics.json`` (``"recipe_facts"``) once the FOV
    has an outcome, and merge-results puts ``registration_shift_px`` in ``fov_quality.csv``. A later
    call for the same FOV adds to (or replaces) what an earlier one said; ``None`` says "not
    measured". Nothing is checked here: a bad value is dropped with a warning when the FOV's metrics
    are written, and never fails the FOV."""
    _reported.update(facts)


def take_fov_facts():
    """(facts, problems): what the recipe reported since the last call, checked (at most MAX_FACTS
    names like ``registration_shift_px``, each a finite number; the registration shift from 0 to
    MAX_REGISTRATION_SHIFT_PX), and why each dropped one was dropped; the record is emptied.
    Whatever the values are, this returns: their conversions run the recipe's code, whose errors
    leave the fact out instead of stopping the FOVs after it."""
    reported = list(_reported.items())
    _reported.clear()
    facts, problems = {}, []

    def problem(describe):
        # past MAX_FACT_PROBLEMS a problem is counted, not written out: a recipe's 10**6 bad names
        # cost a reference each, not a formatted message (and a repr() of its objects) each
        problems.append(describe() if len(problems) < MAX_FACT_PROBLEMS else UNLISTED_PROBLEM)

    for name, value in reported:
        if value is None:
            continue
        if not isinstance(name, str) or not FACT_NAME_RE.match(name):
            problem(lambda: "%r is not a fact name; use lower-case letters, digits and _, e.g. %s"
                    % (one_line_text(name, 60), FACT_EXAMPLE))
            continue
        number = fact_number(name, value)
        if number is None:
            problem(lambda: "%s=%s is not %s" % (name, _shown_value(value), fact_range(name)))
            continue
        if len(facts) == MAX_FACTS:
            problem(lambda: "%s left out: at most %d facts a FOV" % (name, MAX_FACTS))
            continue
        facts[name] = number
    return facts, problems


def _shown_value(value):
    """A reported value for a message, even when its repr() is the recipe's code and fails."""
    try:
        return one_line_text(repr(value)[:200], 60)
    except Exception:
        return "a %s" % one_line_text(type(value).__name__, 40)


def fact_range(name):
    """What a fact must be, for messages."""
    if name == REGISTRATION_SHIFT:
        return "a number of pixels from 0 to %g, e.g. 1.7" % MAX_REGISTRATION_SHIFT_PX
    return "a finite number from -%g to %g" % (MAX_FACT_VALUE, MAX_FACT_VALUE)


def fact_number(name, value):
    """``value`` as the float a fact named ``name`` may hold (rounded to 3 decimals), else None: a
    real number (numpy's too, not bool), finite, within the fact's range."""
    import numbers
    try:  # isinstance reads value.__class__ and float() calls value.__float__: either may be the recipe's code
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return None
        v = float(value)
    except Exception:
        return None
    low, high = (0.0, MAX_REGISTRATION_SHIFT_PX) if name == REGISTRATION_SHIFT else (-MAX_FACT_VALUE, MAX_FACT_VALUE)
    if not (math.isfinite(v) and low <= v <= high):
        return None
    return round(v, 3)


def registration_shift_px(transforms):
    """The largest translation over the rounds, in pixels (its length, whatever the axes), from
    either a starfish ``TransformsList`` (what ``LearnTransform.Translation(...).run`` returns: its
    ``.transforms`` are ``(axes, TransformType, SimilarityTransform)`` tuples, each with a
    ``.translation``) or a sequence of per-round shifts such as ``[(dy, dx), ...]``. None when
    there is no round: nothing was registered.

    Also None, with a warning on stderr saying why, when ``transforms`` is not one of those (more
    than MAX_SHIFT_ROUNDS rounds, a shift of more than 3 axes, a component that is not a finite
    number): the shift is something to show, so what cannot be measured is left out rather than
    failing the FOV, whose spots may be fine."""
    try:
        return _largest_shift(transforms)
    except Exception as exc:
        print("starfish_io: warning: registration_shift_px left out: %s (give it starfish's TransformsList "
              "or per-round shifts, e.g. [(0.0, 0.0), (1.5, -2.0)])" % one_line_text(_exception_text(exc), 200),
              file=sys.stderr)
        return None


MAX_SHIFT_ROUNDS = 1000   # imaging rounds of one FOV; a starfish experiment has a handful


def _largest_shift(transforms):
    import itertools
    items = getattr(transforms, "transforms", transforms)
    if isinstance(items, (str, bytes)):
        raise ValueError("it is text, not a list of shifts")
    largest = None
    # islice: an endless or huge iterable costs MAX_SHIFT_ROUNDS + 1 steps, not the job's time limit
    for n, item in enumerate(itertools.islice(items, MAX_SHIFT_ROUNDS + 1)):
        if n == MAX_SHIFT_ROUNDS:
            raise ValueError("it has more than %d rounds" % MAX_SHIFT_ROUNDS)
        if isinstance(item, (tuple, list)) and len(item) == 3 and hasattr(item[2], "translation"):
            item = item[2]
        vector = list(itertools.islice(getattr(item, "translation", item), 4))
        if not 1 <= len(vector) <= 3:
            raise ValueError("round %d's shift has %s axes, not 1 to 3" % (n, "more than 3" if vector else "no"))
        parts = [float(v) for v in vector]
        if not all(math.isfinite(v) for v in parts):
            # one failed round makes the largest shift unknown, not the largest of the others
            raise ValueError("round %d's shift is %s" % (n, parts))
        length = math.sqrt(sum(v * v for v in parts))
        largest = length if largest is None else max(largest, length)
    return largest


def _exception_text(exc):
    try:
        return "%s: %s" % (type(exc).__name__, exc)
    except Exception:  # an exception whose str() is the recipe's code and fails
        return type(exc).__name__


def one_line_text(value, limit):
    """``value`` as one line of at most ``limit`` characters, for a message."""
    s = " ".join(_CONTROL.sub(" ", str(value)).split())
    return s if len(s) <= limit else s[:limit - 3] + "..."
