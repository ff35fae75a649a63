"""The egress policy (SPEC §9): URLs that tenants control must not reach the operator's network.

A request whose host resolves to a loopback, private, link-local, unique-local, multicast,
unspecified or reserved address is refused, IPv4 and IPv6 alike (IPv4-mapped IPv6 addresses are
judged as the IPv4 address they carry). The check runs where the connection is made: the
transport resolves the host once, judges every address it got, and connects to a judged
address — so a name that resolves to a public address when checked and to 127.0.0.1 when
connecting (DNS rebinding) cannot slip past, and every redirect hop is judged the same way
because each hop opens its connection through the same transport. TLS still verifies the
host name (SNI and certificate come from the URL, not from the address connected to).

``REVFLOW_EGRESS_ALLOW`` opens exceptions: CIDRs (``127.0.0.0/8``) or host names
(``hooks.internal``, matched exactly, case-insensitively).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from revflow.kit import tls

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]


class EgressRefused(Exception):
    """A tenant-controlled URL points at an address the egress policy refuses."""


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def internal_reason(address: IPAddress) -> str | None:
    """Why ``address`` is internal (refused by default), or None for a public address."""
    address = _unmapped(address)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unique-local", isinstance(address, ipaddress.IPv6Address) and address.is_private),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("shared (carrier-grade NAT)", address in ipaddress.ip_network("100.64.0.0/10")),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
    )
    return next((name for name, hit in checks if hit), None)


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP), in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True)
class EgressPolicy:
    """What tenant-controlled URLs may reach: every public address, plus the exceptions."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, allow: str) -> EgressPolicy:
        """From ``REVFLOW_EGRESS_ALLOW``: comma-separated CIDRs (or addresses) and host names."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for item in (part.strip() for part in allow.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allowed_hosts

    def refusal(self, address: str) -> str | None:
        """Why a connection to ``address`` is refused, or None when it is allowed."""
        parsed = _unmapped(ipaddress.ip_address(address.split("%", 1)[0]))
        if any(parsed in network for network in self.allowed_networks):
            return None
        reason = internal_reason(parsed)
        return None if reason is None else f"{parsed} is a {reason} address"

    async def judge(self, host: str, port: int, resolver: Resolver = system_resolver) -> list[str]:
        """Resolve ``host`` once and answer its addresses; refuse if any of them is refused."""
        host = host.strip("[]")
        if self.host_allowed(host):
            return await resolver(host, port)
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            addresses = await resolver(host, port)
        if not addresses:
            raise EgressRefused(f"{host} resolves to no address")
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                via = "" if host == address else f"{host} resolves to {address}; "
                raise EgressRefused(
                    f"refused by the egress policy: {via}{reason} "
                    "(REVFLOW_EGRESS_ALLOW opens exceptions)"
                )
        return addresses

    async def check_url(self, url: str, resolver: Resolver = system_resolver) -> None:
        """Judge a URL before it is stored (a webhook subscription): an address literal, or a
        name resolving now to a refused address, raises. A name that does not resolve now (or
        not within two seconds) is let through: it is judged again on every connection."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            async with asyncio.timeout(2.0):
                await self.judge(host, port, resolver)
        except (OSError, TimeoutError):
            return


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens every TCP connection to an address the policy has judged."""

    def __init__(self, policy: EgressPolicy, resolver: Resolver) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.policy.judge(host, port, self.resolver)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("unix sockets are not reachable through the egress policy")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class EgressTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose connections obey the egress policy (no proxy, no unix socket:
    either would connect somewhere the policy did not judge)."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolver: Resolver = system_resolver,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        context = tls.client_context(trust_env=False)
        super().__init__(verify=context, trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy, resolver),
        )


def guarded_client(
    policy: EgressPolicy,
    *,
    timeout: float,
    follow_redirects: bool = False,
    resolver: Resolver = system_resolver,
    limits: httpx.Limits | None = None,
) -> httpx.AsyncClient:
    """An HTTP client for tenant-controlled URLs (each redirect hop is judged on connect)."""
    return httpx.AsyncClient(
        transport=EgressTransport(policy, resolver=resolver, limits=limits),
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=5,
        trust_env=False,
    )


def refused_in(exc: BaseException) -> EgressRefused | None:
    """The egress refusal behind an exception raised by a guarded client, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, EgressRefused):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
