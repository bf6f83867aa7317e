"""SSRF guard for music ``url`` downloads: refuse hosts that resolve to non-public addresses.

Before every request hop (the first and each redirect, at most ``MAX_REDIRECTS``) the host is
resolved with ``loop.getaddrinfo`` and refused when *any* address fails the policy (default
``is_public``: no loopback, private, link-local incl. 169.254.169.254, unspecified, multicast,
reserved, shared 100.64/10, site-local, or IPv6 forms embedding such an IPv4 address).

DNS rebinding: the request goes to the address that was checked, not to the name. The URL's host
is replaced by that IP, ``Host`` keeps the original name, and for https httpcore's
``sni_hostname`` request extension makes TLS send and verify the certificate against the original
name (httpx 0.28 / httpcore 1.0: ``server_hostname`` in ``AsyncHTTPConnection._connect``).
Addresses are tried in ``getaddrinfo`` order until one connects. Keep-alive is off, so a
connection opened for one name is never reused for another name on the same IP. The client gets
its own transport, so ``HTTP(S)_PROXY`` variables are not used for these downloads (a proxy would
resolve the name itself); ``SSL_CERT_FILE``/``SSL_CERT_DIR`` still apply.

A refused address is a ``PayloadError`` naming the field; a name that does not resolve is
``httpx.ConnectError`` (``ConnectTimeout`` when the lookup is slow), as without the guard.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import httpx

from worker.errors import PayloadError

IPAddress = IPv4Address | IPv6Address
AddressPolicy = Callable[[IPAddress], bool]

MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NAT64 = IPv6Network("64:ff9b::/96")
_SHARED = IPv4Network("100.64.0.0/10")


def is_public(ip: IPAddress) -> bool:
    """True when ``ip`` is globally routable unicast (IPv6 forms embedding IPv4 judge that IPv4)."""
    if isinstance(ip, IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
        if ip.is_site_local:
            return False
    elif ip in _SHARED:
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def resolve(url: httpx.URL, timeout_s: float) -> list[IPAddress]:
    """The distinct addresses ``url``'s host resolves to, in ``getaddrinfo`` order."""
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        async with asyncio.timeout(timeout_s):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise httpx.ConnectTimeout(f"resolving {host} timed out") from None
    except (socket.gaierror, UnicodeError) as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from None
    ips = dict.fromkeys(ip_address(str(info[4][0]).partition("%")[0]) for info in infos)
    if not ips:
        raise httpx.ConnectError(f"cannot resolve {host}")
    return list(ips)


async def checked_addresses(
    url: httpx.URL, field: str, allowed: AddressPolicy, *, timeout_s: float, redirected: bool = False
) -> list[IPAddress]:
    """``url``'s addresses when every one passes ``allowed``; else a PayloadError naming ``field``."""
    if not url.raw_host:
        raise PayloadError(field, "has no host")
    ips = await resolve(url, timeout_s)
    bad = next((ip for ip in ips if not allowed(ip)), None)
    if bad is not None:
        host = url.raw_host.decode("ascii")
        # Name the address only when the URL spelled it: never reveal what internal names resolve to.
        shown = str(bad) if _is_literal(host) else host
        where = ", after a redirect" if redirected else ""
        raise PayloadError(
            field,
            f"refers to a private or local address ({shown}{where}); "
            "set INPUT_URL_ALLOW_PRIVATE=true to allow",
        )
    return ips


def pinned_request(client: httpx.AsyncClient, url: httpx.URL, ip: IPAddress) -> httpx.Request:
    """A GET of ``url`` sent to ``ip``: ``Host`` and (https) TLS SNI/certificate name stay the URL's."""
    name = url.raw_host.decode("ascii")
    extensions = {"sni_hostname": name} if url.scheme == "https" else None
    return client.build_request(
        "GET",
        url.copy_with(host=str(ip)),
        headers={"Host": url.netloc.decode("ascii")},
        extensions=extensions,
    )


@asynccontextmanager
async def guarded_get(
    url: str,
    field: str,
    *,
    timeout: httpx.Timeout,
    allowed: AddressPolicy = is_public,
    max_redirects: int = MAX_REDIRECTS,
) -> AsyncIterator[httpx.Response]:
    """Stream a GET of ``url``, following redirects by hand so every hop is checked and pinned.

    Yields the final (non-redirect) response, body not yet read. Raises like httpx would with
    ``follow_redirects=True`` (``TooManyRedirects``, ``RemoteProtocolError`` for a bad Location),
    and PayloadError for a refused address or a redirect to a scheme other than http(s).
    """
    current = httpx.URL(url)
    connect_s = timeout.connect if timeout.connect is not None else 10.0
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
    async with httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False) as client:
        for hop in range(max_redirects + 1):
            ips = await checked_addresses(current, field, allowed, timeout_s=connect_s, redirected=hop > 0)
            resp = await _send_first_reachable(client, current, ips)
            location = resp.headers.get("location")
            if resp.status_code not in _REDIRECT_STATUSES or location is None:
                try:
                    yield resp
                finally:
                    await resp.aclose()
                return
            await resp.aclose()
            current = _redirect_target(current, location, field)
        raise httpx.TooManyRedirects(f"more than {max_redirects} redirects")


async def _send_first_reachable(
    client: httpx.AsyncClient, url: httpx.URL, ips: list[IPAddress]
) -> httpx.Response:
    last: httpx.TransportError | None = None
    for ip in ips:
        try:
            return await client.send(pinned_request(client, url, ip), stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            last = exc
    assert last is not None
    raise last


def _redirect_target(current: httpx.URL, location: str, field: str) -> httpx.URL:
    """The next URL, resolved against the original (name-based) URL as httpx does."""
    try:
        target = httpx.URL(location)
    except httpx.InvalidURL as exc:
        raise httpx.RemoteProtocolError(f"Invalid URL in location header: {exc}.") from None
    if target.scheme and not target.host:
        target = target.copy_with(host=current.host)
    if target.is_relative_url:
        target = current.join(target)
    if target.scheme not in ("http", "https"):
        raise PayloadError(field, "redirected to a URL that is not http or https")
    return target


def _is_literal(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True
