"""The SSRF guard on music ``url`` layers: private and local addresses are refused before anything
is fetched, on every redirect hop; INPUT_URL_ALLOW_PRIVATE=true restores plain downloads; the
request goes to the checked address with the URL's name in Host and TLS SNI."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import AudioHost, all_keys, enqueue, pipeline_env
from tests.e2e.test_pipeline_failures import finished
from tests.e2e.test_pipeline_inputs import fetch, music
from tests.fakes.audio import sample_audio
from tests.fakes.server import Reply
from worker.errors import PayloadError, RetryableError
from worker.job.inputs import download_url
from worker.job.urlguard import is_public

pytestmark = pytest.mark.timeout(60)

FIELD = "layers[1].url"
ONLY_127_0_0_1 = {IPv4Address("127.0.0.1")}.__contains__


class SecondHost(AudioHost):
    bind_host = "127.0.0.2"


@pytest.fixture
def other() -> Iterator[AudioHost]:
    with SecondHost() as server:
        yield server


def inputs(tmp_path: Path) -> list[str]:
    return [p.name for p in tmp_path.iterdir() if p.name.startswith("input-")]


def download(url: str, tmp_path: Path, **kw: Any) -> Path:
    return asyncio.run(download_url(url, tmp_path, FIELD, **kw))


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("2002:808:808::1", True),
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("192.0.2.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::7f00:1", False),
        ("64:ff9b::a01:203", False),
        ("2002:7f00:1::", False),
        ("2001:db8::1", False),
    ],
)
def test_address_policy(address, public):
    assert is_public(ip_address(address)) is public


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:{port}/x.mp3", "127.0.0.1"),
        ("http://localhost:{port}/x.mp3", "localhost"),
        ("http://[::1]:{port}/x.mp3", "::1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://10.1.2.3/x.mp3", "10.1.2.3"),
        ("http://0.0.0.0:{port}/x.mp3", "0.0.0.0"),
        ("http://[::ffff:127.0.0.1]:{port}/x.mp3", "::ffff:7f00:1"),
    ],
)
def test_default_settings_refuse_private_and_local_hosts_before_any_request(host, tmp_path, url, shown):
    port = host.url.rsplit(":", 1)[1]
    with pytest.raises(PayloadError) as err:
        fetch(music(url=url.format(port=port)), tmp_path)
    assert str(err.value) == (
        f"invalid payload: {FIELD}: refers to a private or local address ({shown}); "
        "set INPUT_URL_ALLOW_PRIVATE=true to allow"
    )
    assert host.requests == [] and inputs(tmp_path) == []


def test_the_setting_from_the_environment_allows_private_hosts(host, tmp_path, monkeypatch):
    monkeypatch.setenv("INPUT_URL_ALLOW_PRIVATE", "true")
    path = fetch(music(url=f"{host.url}/bed.mp3"), tmp_path)
    assert path.read_bytes() == sample_audio("mp3", seconds=1.0, freq=300.0, rate=44100)
    assert [r.path for r in host.requests] == ["/bed.mp3"]


def test_a_redirect_to_a_refused_address_is_refused_after_an_allowed_first_hop(host, other, tmp_path):
    host.script(Reply(302, b"", headers={"Location": f"{other.url}/bed.mp3"}))
    with pytest.raises(PayloadError) as err:
        download(f"{host.url}/start.mp3", tmp_path, allowed=ONLY_127_0_0_1)
    assert err.value.field == FIELD
    assert err.value.rule.startswith("refers to a private or local address (127.0.0.2, after a redirect)")
    assert [r.path for r in host.requests] == ["/start.mp3"] and other.requests == []
    assert inputs(tmp_path) == []


def test_allowed_redirects_are_followed_to_the_checked_address_with_the_urls_host_name(host, other, tmp_path):
    host.script(Reply(301, b"", headers={"Location": f"{other.url}/hop"}))
    other.script(Reply(307, b"", headers={"Location": "/bed.mp3"}))  # relative: same host
    path = download(f"{host.url}/start.mp3", tmp_path, allowed=lambda ip: ip.is_loopback)
    assert path.stat().st_size > 1000
    assert [r.path for r in other.requests] == ["/hop", "/bed.mp3"]
    assert {r.headers["host"] for r in other.requests} == {other.url.removeprefix("http://")}
    # A name is resolved, checked and pinned to its address; the request still says Host: localhost:<port>.
    host.reset()
    by_name = f"localhost:{host.url.rsplit(':', 1)[1]}"
    download(f"http://{by_name}/bed.mp3", tmp_path, allowed=lambda ip: ip.is_loopback)
    assert [(r.path, r.headers["host"]) for r in host.requests] == [("/bed.mp3", by_name)]


def test_redirect_limits_and_schemes_hold_under_the_guard(host, tmp_path):
    loopback = {"allowed": lambda ip: ip.is_loopback}
    host.script(*[Reply(302, b"", headers={"Location": f"/r{i}"}) for i in range(6)])
    with pytest.raises(PayloadError, match="too many redirects"):
        download(f"{host.url}/start.mp3", tmp_path, **loopback)
    assert len(host.requests) == 6  # the first request and 5 redirects, as httpx's max_redirects=5
    host.reset()
    host.script(Reply(302, b"", headers={"Location": "ftp://example.com/a.mp3"}))
    with pytest.raises(PayloadError, match="redirected to a URL that is not http or https"):
        download(f"{host.url}/start.mp3", tmp_path, **loopback)
    host.reset()
    host.script(Reply(503, b"busy"))
    with pytest.raises(RetryableError, match=r"layers\[1\]\.url: 127\.0\.0\.1 answered HTTP 503"):
        download(f"{host.url}/busy.mp3", tmp_path, **loopback)
    with pytest.raises(PayloadError, match="larger than"):
        download(f"{host.url}/big.mp3", tmp_path, max_bytes=100, **loopback)
    assert inputs(tmp_path) == []


def test_a_host_that_does_not_resolve_stays_retryable(tmp_path):
    with pytest.raises(RetryableError, match=r"layers\[1\]\.url: download from no-such-host\.invalid failed"):
        download("http://no-such-host.invalid/x.mp3", tmp_path)
    assert inputs(tmp_path) == []


# -- https: the pinned connection still sends and verifies the URL's name ------------------------


def _tls_files(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for the name ``localhost`` only (no IP address): (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)

    def build(subject: str, key: Any, issuer: x509.Name, signer: Any, ca: bool) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if ca:
            b = b.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        else:
            b = (
                b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
                )
                .add_extension(
                    x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
                )
            )
        return b.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build(
        "test CA", ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]), ca_key, True
    )
    leaf = build("localhost", key, ca.subject, ca_key, False)
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture
def tls_host(tmp_path) -> Iterator[tuple[str, Path, list[tuple[str | None, str]]]]:
    """An https server on 127.0.0.1 serving mp3: (base URL by name, CA file, [(SNI, Host), ...])."""
    ca, cert, key = _tls_files(tmp_path)
    seen: list[tuple[str | None, str]] = []
    sni: list[str | None] = []
    body = sample_audio("mp3", seconds=1.0, freq=300.0, rate=44100)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append((sni[-1] if sni else None, self.headers.get("Host", "")))
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda _sock, name, _ctx: sni.append(name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{httpd.server_address[1]}", ca, seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_https_is_pinned_to_the_checked_address_with_the_urls_name_in_sni_and_host(
    tls_host, tmp_path, monkeypatch
):
    base, ca, seen = tls_host
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # httpx trusts the test CA (the guard's transport reads it)
    path = download(f"{base}/bed.mp3", tmp_path, allowed=lambda ip: ip.is_loopback)
    assert path.stat().st_size > 1000
    # Sent to 127.0.0.1 (the only listener), yet TLS named localhost: the certificate (no IP
    # address in it) verified, and the server saw the name in SNI and Host.
    assert seen == [("localhost", base.removeprefix("https://"))]


# -- through a real worker ---------------------------------------------------------------------


def test_a_job_with_a_url_layer_on_a_local_address_fails_at_once(conn, fleet, s3, host, tmp_path):
    jid = enqueue(
        conn,
        {
            "spec_version": 1,
            "duration_s": 3,
            "layers": [{"type": "solfeggio"}, {"type": "music", "url": f"{host.url}/bed.mp3"}],
        },
    )
    fleet.start(**pipeline_env(s3, tmp_path))
    row = finished(conn, jid, "failed", "completed", "pending")
    assert row["status"] == "failed" and row["attempts"] == 1
    assert row["error_message"].startswith(
        f"invalid payload: {FIELD}: refers to a private or local address "
        "(127.0.0.1); set INPUT_URL_ALLOW_PRIVATE=true"
    )
    assert host.requests == [] and all_keys(s3) == []
