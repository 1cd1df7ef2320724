"""The containers' URL policy (starfish_io) tried as an attacker would.

The table is test/fixtures/url-policy/urls.json, which test/run/url-policy.test.ts reads too,
so the Python and TypeScript policies give the same verdicts. Names are answered by an
injected resolver and the https server is local (test/fixtures/tls, a test-only CA, loopback
admitted only through test_only_addresses): nothing here touches DNS or the internet.
"""
import http.server
import json
import os
import ssl
import threading

import pytest

import process_fov as pf
import starfish_io as sio
from conftest import REPO
from spacetx_cases import load_cases

FIXTURES = os.path.join(REPO, "test", "fixtures")
with open(os.path.join(FIXTURES, "url-policy", "urls.json")) as _fh:
    TABLE = json.load(_fh)
TLS = os.path.join(FIXTURES, "tls")
TEST_HOST = "data.lab.test"
PUBLIC = "https://example.org/iss/experiment.json"


class Resolver(object):
    """Answers each question with the next of ``answers`` (the last one again when they run out)."""

    def __init__(self, *answers):
        self.answers = answers
        self.asked = []

    def __call__(self, host):
        answer = self.answers[min(len(self.asked), len(self.answers) - 1)]
        self.asked.append(host)
        return list(answer)


def no_dns(host):
    raise AssertionError("the resolver was asked for %s" % host)


@pytest.fixture(autouse=True)
def no_allowlist(monkeypatch):
    monkeypatch.delenv("STARFISH_HTTPS_HOSTS", raising=False)
    yield
    sio.set_https_test_options()


def refusal(fn, *args, **kwargs):
    with pytest.raises(sio.UrlRefused) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------------
# the shared table

def test_the_table_has_the_spellings_the_policy_is_tried_with():
    assert len(TABLE["refusedLiterals"]) + len(TABLE["refusedNames"]) >= 25


@pytest.mark.parametrize("case", TABLE["refusedLiterals"], ids=lambda c: c["url"])
def test_literal_addresses_are_refused_without_asking_dns(case):
    message = refusal(sio.check_https_url, case["url"])
    assert case["why"] in message
    assert "public internet, e.g. " + PUBLIC in message
    assert refusal(sio.resolve_https, case["url"], resolve=no_dns) == message
    assert refusal(sio.read_bytes, case["url"]) == message  # refused before any connection


@pytest.mark.parametrize("case", TABLE["refusedNames"], ids=lambda c: c["url"])
def test_names_resolving_to_internal_addresses_are_refused(case):
    dns = Resolver(case["answers"])
    message = refusal(sio.resolve_https, case["url"], resolve=dns)
    assert "%s resolves to" % case["asks"] in message
    assert case["why"] in message
    assert dns.asked == [case["asks"]]
    sio.check_https_url(case["url"])  # the static check alone lets it through: only resolving finds it


@pytest.mark.parametrize("case", TABLE["refusedForms"], ids=lambda c: c["url"])
def test_other_schemes_and_malformed_urls_are_refused_locally_and_remotely(case):
    sio.set_https_test_options(resolve=no_dns)
    for allowed in (True, False):
        with sio.local_files(allowed):
            message = refusal(sio.read_bytes, case["url"])
            if case["why"]:
                assert case["why"] in message
            refusal(sio.exists, case["url"])
    for local_mode in (True, False):
        refusal(sio.resolve_reference, "/data/iss/experiment.json", case["url"], local_mode)


@pytest.mark.parametrize("case", TABLE["accepted"], ids=lambda c: c["url"])
def test_public_urls_are_accepted_and_pinned_to_the_first_address(case):
    dns = Resolver(case["answers"]) if "answers" in case else no_dns
    target = sio.resolve_https(case["url"], resolve=dns)
    if "answers" in case:
        assert dns.asked == [case["asks"]]
        assert (target.host, target.address) == (case["asks"], case["answers"][0])
    else:
        assert target.address == target.host


def test_ipv4_spellings_are_read_as_whatwg_url_reads_them():
    for spelling in ("2130706433", "0177.0.0.1", "0x7f.1", "127.1", "0x7f000001", "%31%32%37.0.0.1",
                     u"\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.0.0.1."):
        assert sio.check_https_url("https://%s/x" % spelling, test_only_addresses=("127.0.0.1",)).host == "127.0.0.1"


# ---------------------------------------------------------------------------------------
# messages, allowlist, test-only addresses

def test_the_refusal_names_the_url_the_address_what_it_is_and_an_accepted_example():
    assert refusal(sio.check_https_url, "https://169.254.169.254/latest/meta-data/") == (
        "https://169.254.169.254/latest/meta-data/ is refused: 169.254.169.254 is a link-local address "
        "(where cloud instance and container metadata are served). Inputs are read only from servers on "
        "the public internet, e.g. https://example.org/iss/experiment.json")
    assert refusal(sio.resolve_https, "https://data.lab.internal/iss/experiment.json",
                   resolve=Resolver(["10.0.0.5"])) == (
        "https://data.lab.internal/iss/experiment.json is refused: data.lab.internal resolves to 10.0.0.5, "
        "which is a private network address (RFC 1918). Inputs are read only from servers on the public "
        "internet, e.g. https://example.org/iss/experiment.json")


def test_a_name_that_does_not_resolve():
    def missing(host):
        raise OSError(-2, "Name or service not known")
    assert "the name no-such-host.example was not found" in refusal(
        sio.resolve_https, "https://no-such-host.example/x", resolve=missing)
    assert "has no address" in refusal(sio.resolve_https, "https://empty.example/x", resolve=Resolver([]))


def test_the_host_allowlist_from_the_environment(monkeypatch):
    monkeypatch.setenv("STARFISH_HTTPS_HOSTS", "data.lab.org, *.spacetx.org")
    sio.set_https_test_options(resolve=Resolver(["10.0.0.5"]))
    for url in ("https://example.org/x", "https://spacetx.org/x", "https://evilspacetx.org/x"):
        assert refusal(sio.read_bytes, url) == (
            "%s is refused: this deployment reads https inputs only from data.lab.org, *.spacetx.org. "
            "Example: https://data.lab.org/iss/experiment.json" % url)
    # an allowed host is still refused when it resolves to an internal address
    assert "data.lab.org resolves to 10.0.0.5, which is a private network address" in refusal(
        sio.read_bytes, "https://DATA.LAB.ORG./x")
    assert "a.b.spacetx.org resolves to 10.0.0.5" in refusal(sio.read_bytes, "https://a.b.spacetx.org/x")
    # references inside an experiment are held to the allowlist too
    assert "only from data.lab.org" in refusal(sio.resolve_reference, "s3://b/e.json", "https://example.org/x", False)


def test_test_only_addresses_admit_exactly_what_they_list():
    sio.resolve_https("https://h.test/x", resolve=Resolver(["127.0.0.1"]), test_only_addresses=("127.0.0.1",))
    sio.resolve_https("https://h.test/x", resolve=Resolver(["0:0:0:0:0:0:0:1"]), test_only_addresses=("::1",))
    assert "loopback" in refusal(sio.resolve_https, "https://h.test/x", resolve=Resolver(["127.0.0.2"]),
                                 test_only_addresses=("127.0.0.1",))


# ---------------------------------------------------------------------------------------
# references inside experiment JSON; local files in remote mode

@pytest.mark.parametrize("url", TABLE["fileUrls"])
def test_file_urls_in_a_remote_experiment_are_refused_and_followed_in_a_local_one(url):
    for base in ("s3://lab-data/iss/experiment.json", "https://example.org/iss/experiment.json"):
        assert "a remote experiment may not refer to files" in refusal(sio.resolve_reference, base, url, False)
    assert sio.resolve_reference("/data/iss/experiment.json", url, True) == url


def test_absolute_paths_in_a_remote_experiment_are_refused_and_relative_ones_joined():
    assert "a remote experiment may not refer to files" in refusal(
        sio.resolve_reference, "s3://lab-data/iss/experiment.json", "/etc/passwd", False)
    assert sio.resolve_reference("/data/iss/experiment.json", "/elsewhere/p.json", True) == "/elsewhere/p.json"
    assert sio.resolve_reference("s3://lab-data/iss/experiment.json", "primary.json", False) == "s3://lab-data/iss/primary.json"
    assert sio.resolve_reference("/data/iss/experiment.json", "primary.json", True) == "/data/iss/primary.json"
    assert sio.resolve_reference("s3://lab-data/iss/e.json", "s3://other/x.json", False) == "s3://other/x.json"
    assert "http:// is not read" in refusal(sio.resolve_reference, "s3://b/e.json", "http://example.org/x", False)


def test_no_local_file_is_read_while_local_files_are_off(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    with sio.local_files(False):
        for location in (str(secret), "file://" + str(secret)):
            assert "reads no file of the machine it runs on" in refusal(sio.read_bytes, location)
            assert "reads no file of the machine it runs on" in refusal(sio.exists, location)
    assert sio.read_text("file://" + str(secret)) == "secret"  # on again after the block


def _remote_experiment(fake_s3, edit=None):
    """The conformance table's plain 5.0.0 experiment (two FOVs) in the fake bucket, after
    ``edit(files)`` changed its JSON documents in place."""
    files = load_cases()["v5-flat"]["files"]
    if edit:
        edit(files)
    for name, value in files.items():
        body = value["bytes"].encode("ascii") if list(value) == ["bytes"] else json.dumps(value).encode()
        fake_s3.put_object(Bucket="lab-data", Key="iss/" + name, Body=body)
    return "s3://lab-data/iss/experiment.json"


@pytest.fixture
def fake_s3():
    client = sio.FakeS3Client()
    sio.set_s3_client(client)
    yield client
    sio.set_s3_client(None)


def _set(path, *keys_and_value):
    """An edit of the document ``path``: the value at the nested keys replaced."""
    *keys, value = keys_and_value

    def edit(files):
        doc = files[path]
        for key in keys[:-1]:
            doc = doc[key]
        doc[keys[-1]] = value
    return edit


@pytest.mark.parametrize("edit, where, what", [
    (_set("experiment.json", "images", "primary", "file:///etc/passwd"), "images.primary", "may not refer to files"),
    (_set("experiment.json", "images", "nuclei", "/proc/self/environ"), "images.nuclei", "may not refer to files"),
    (_set("experiment.json", "codebook", "http://169.254.169.254/x"), "codebook", "http:// is not read"),
    (_set("primary_images.json", "contents", "fov_000", "https://[fd00:ec2::254]/latest/"), "contents.fov_000",
     "unique local"),
    (_set("primary_images-fov_000.json", "tiles", 0, "file", "file:///root/.aws/credentials"), "tiles[0].file",
     "may not refer to files"),
])
def test_process_fov_refuses_what_a_remote_experiment_refers_to(fake_s3, edit, where, what):
    experiment = _remote_experiment(fake_s3, edit)
    with pytest.raises(pf.Failure) as info:
        with sio.local_files(False):
            pf.check_experiment(experiment, 0)
    assert info.value.code == pf.EXIT_BAD_ENV
    assert info.value.reason.startswith(where + " in s3://lab-data/iss/")
    assert what in info.value.reason


def test_process_fov_turns_off_local_files_for_a_remote_experiment_recipe(fake_s3, tmp_path, capsys):
    """A recipe that follows a remote experiment's file:// reference through starfish_io is
    refused; the refusal is the FOV's reason."""
    experiment = _remote_experiment(fake_s3)
    recipe = tmp_path / "r.py"
    recipe.write_text("import starfish_io as sio\n"
                      "def process_fov(fov_index, experiment_url):\n"
                      "    sio.read_text('file:///etc/hostname')\n")
    out = str(tmp_path / "fovs")
    code = pf.main({"STARFISH_RUN_ID": "261125-k3f9", "STARFISH_EXPERIMENT": experiment,
                    "STARFISH_RECIPE": str(recipe), "STARFISH_FOVS": "0", "STARFISH_FOV_OUTPUT": out})
    assert code == pf.EXIT_FAILURE
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("process-fov: FOV 0: file:///etc/hostname is refused: this job reads a remote experiment")


def test_process_fov_follows_absolute_paths_of_a_local_experiment(synthetic_copy):
    exp_dir = os.path.dirname(synthetic_copy)
    with open(synthetic_copy) as fh:
        exp = json.load(fh)
    exp["images"]["primary"] = os.path.join(exp_dir, exp["images"]["primary"])
    exp["codebook"] = "file://" + os.path.join(exp_dir, exp["codebook"])
    with open(synthetic_copy, "w") as fh:
        json.dump(exp, fh)
    assert pf.check_experiment(synthetic_copy, 1).tileset_url == os.path.join(exp_dir, "primary-fov_001.json")


# ---------------------------------------------------------------------------------------
# the pinned connection, against a local TLS server

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.seen.append({"path": self.path, "host": self.headers.get("Host")})
        status, headers, body = self.server.answer(self.path)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def tls_server():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(TLS, "server.crt"), os.path.join(TLS, "server.key"))
    names = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.seen, server.names = [], names
    server.answer = lambda path: (200, {}, ("body of " + path).encode())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client_context():
    return ssl.create_default_context(cafile=os.path.join(TLS, "ca.crt"))


def local_get(server, path="/iss/experiment.json", host=TEST_HOST, dns=None, admit=("127.0.0.1",), **kwargs):
    url = "https://%s:%d%s" % (host, server.server_address[1], path)
    return sio.https_get(url, resolve=dns or Resolver(["127.0.0.1"]), context=client_context(),
                         test_only_addresses=admit, timeout=5, **kwargs)


def test_reads_over_tls_from_the_checked_address_with_the_name_as_sni_and_host(tls_server):
    dns = Resolver(["127.0.0.1"])
    assert local_get(tls_server, "/iss/experiment.json?v=1", dns=dns) == b"body of /iss/experiment.json?v=1"
    assert dns.asked == [TEST_HOST]
    assert tls_server.seen == [{"path": "/iss/experiment.json?v=1", "host": "%s:%d" % (TEST_HOST, tls_server.server_address[1])}]
    assert tls_server.names == [TEST_HOST]


def test_connects_to_the_checked_address_even_when_dns_answers_differently_afterwards(tls_server):
    dns = Resolver(["127.0.0.1"], ["169.254.169.254"])  # rebinding: a later answer is the metadata service
    assert local_get(tls_server, "/x", dns=dns) == b"body of /x"
    assert dns.asked == [TEST_HOST]
    assert len(tls_server.seen) == 1


def test_loopback_is_refused_before_connecting_unless_the_test_admits_it(tls_server):
    message = refusal(local_get, tls_server, admit=())
    assert "%s resolves to 127.0.0.1, which is a loopback address" % TEST_HOST in message
    assert "resolves to 10.0.0.5" in refusal(local_get, tls_server, dns=Resolver(["127.0.0.1", "10.0.0.5"]))
    assert tls_server.seen == [] and tls_server.names == []


def test_redirects_are_not_followed(tls_server):
    tls_server.answer = lambda path: (302, {"Location": "https://169.254.169.254/latest/meta-data/"}, b"")
    message = refusal(local_get, tls_server)
    assert "answered with a redirect (HTTP 302) to https://169.254.169.254/latest/meta-data/; redirects are not followed" in message
    assert len(tls_server.seen) == 1


def test_the_certificate_is_verified_against_the_host_name_not_the_pinned_address(tls_server):
    with pytest.raises(ssl.SSLError):
        local_get(tls_server, host="elsewhere.lab.test")
    assert tls_server.seen == []


def test_missing_objects_and_exists_over_https(tls_server):
    tls_server.answer = lambda path: (404, {}, b"no") if path == "/missing" else (200, {}, b"yes")
    sio.set_https_test_options(resolve=Resolver(["127.0.0.1"]), context=client_context(),
                               test_only_addresses=("127.0.0.1",))
    base = "https://%s:%d" % (TEST_HOST, tls_server.server_address[1])
    assert sio.read_text(base + "/present") == "yes"
    with pytest.raises(FileNotFoundError) as info:
        sio.read_bytes(base + "/missing")
    assert info.value.filename == base + "/missing"
    assert sio.exists(base + "/present") and not sio.exists(base + "/missing")


def test_a_body_larger_than_the_cap_is_refused_while_reading(tls_server):
    tls_server.answer = lambda path: (200, {}, b"x" * 300_000)
    with pytest.raises(IOError) as caught:
        local_get(tls_server, "/huge.json", max_bytes=100_000)
    assert "/huge.json is larger than" in str(caught.value) and "the limit for an https input" in str(caught.value)
    assert local_get(tls_server, "/huge.json", max_bytes=400_000) == b"x" * 300_000


def test_a_server_that_sends_too_slowly_is_given_up_on(tls_server):
    tls_server.answer = lambda path: (200, {}, b"y" * 200_000)
    with pytest.raises(IOError) as caught:
        local_get(tls_server, "/slow.json", total_seconds=-1)
    assert "took too long" in str(caught.value)
