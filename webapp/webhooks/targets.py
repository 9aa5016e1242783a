"""Where a webhook may point: URL rules and the SSRF guard.

Every address a host resolves to must be a public one (not loopback, private, link-local, multicast,
reserved, shared or unspecified) unless WEBHOOK_ALLOW_PRIVATE_TARGETS is set. The check runs when an
endpoint is saved and again before every attempt, and the attempt then connects to the very address that
was checked, so a DNS answer that changes in between (rebinding) cannot steer it inward. Numeric host
forms (2130706433, 0177.0.0.1, 0x7f.1) resolve through the same resolver the connection would use, so
they are judged by the address they really name.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = ("http", "https")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """The URL is malformed or names an address we will not call."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # as written (IPv6 without brackets), lower case
    port: int
    path: str  # path and query, never empty
    host_header: str
    address: str | None  # the checked address to connect to; None: connect by name (private targets allowed)


def parse_url(url: str) -> SplitResult:
    """Shape rules that hold in every environment; raises TargetRefused with a message for a form field."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"at most {MAX_URL_LENGTH} characters")
    if any(character.isspace() or ord(character) < 32 for character in url):
        raise TargetRefused("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise TargetRefused("must start with https:// or http://")
    if not parts.hostname:
        raise TargetRefused("must name a host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("must not carry a user name or password; authenticate with the signature instead")
    if parts.fragment:
        raise TargetRefused("must not have a #fragment")
    if port == 0:
        raise TargetRefused("port 0 is not a valid port")
    return parts


def check_url(url: str, allow_private: bool) -> None:
    """Raise TargetRefused unless `url` may be saved as an endpoint."""
    parts = parse_url(url)
    if not allow_private:
        resolve_public(parts.hostname or "", _port_of(parts))


def resolve_target(url: str, allow_private: bool) -> Target:
    """Where to connect for one attempt; refuses private addresses when they are not allowed."""
    parts = parse_url(url)
    host = (parts.hostname or "").lower()
    port = _port_of(parts)
    address = None if allow_private else str(resolve_public(host, port))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if parts.scheme.lower() == "https" else 80
    shown_host = f"[{host}]" if ":" in host else host
    host_header = shown_host if port == default_port else f"{shown_host}:{port}"
    return Target(parts.scheme.lower(), host, port, path, host_header, address)


def resolve_public(host: str, port: int) -> IPAddress:
    """The first address of `host`, after checking that every address it resolves to is public."""
    addresses = resolve(host, port)
    for address in addresses:
        if not is_public(address):
            raise TargetRefused(f"{host} resolves to {address}, a private or reserved address; use a public host")
    return addresses[0]


def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{host} does not resolve ({exc})") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in answers:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"{host} does not resolve")
    return addresses


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            return is_public(embedded)
        if address in NAT64_PREFIX:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not address.is_multicast


NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


def _port_of(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)
