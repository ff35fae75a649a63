"""The webhook sender: kept-alive connections, a connection the receiver closed while idle
replaced once, deadlines, large answers, TLS with the URL's host name, and the egress policy on
every connection it opens."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from revflow.kit.egress import EgressPolicy, EgressRefused, Resolver, system_resolver
from revflow.webhooks.sender import Sender, SendFailed, split_url
from tests.webhooks.receiver import Answer, Delivered, Receiver

CERTS = Path(__file__).resolve().parent.parent / "support" / "certs"
LOOPBACK = EgressPolicy.parse("127.0.0.0/8")
BODY = b'{"type":"ping"}'
HEADERS = {"webhook-id": "msg_1", "content-type": "application/json"}


def sender(
    policy: EgressPolicy = LOOPBACK,
    *,
    timeout: float = 5.0,
    resolver: Resolver = system_resolver,
    ssl_context: ssl.SSLContext | None = None,
) -> Sender:
    return Sender(policy, timeout=timeout, resolver=resolver, ssl_context=ssl_context)


def nth(answers: dict[int, Answer]) -> Callable[[int, Delivered], Answer]:
    return lambda n, _request: answers.get(n, Answer(204))


async def test_requests_share_one_kept_alive_connection() -> None:
    async with Receiver(nth({})) as receiver:
        client = sender()
        for _ in range(3):
            answer = await client.post(receiver.url, BODY, HEADERS)
            assert answer.status_code == 204
        await client.aclose()
    assert receiver.connections == 1
    assert [r.body for r in receiver.requests] == [BODY] * 3
    first = receiver.requests[0].headers
    assert first["host"] == f"127.0.0.1:{receiver.port}"
    assert first["content-length"] == str(len(BODY))
    assert first["webhook-id"] == "msg_1"


async def test_targets_are_escaped_as_browsers_do() -> None:
    async with Receiver(nth({})) as receiver:
        base = f"http://127.0.0.1:{receiver.port}"
        client = sender()
        await client.post(f"{base}/hooks/a b/\u00fc?x=1&y=%2F", BODY, HEADERS)
        await client.aclose()
    [request] = receiver.requests
    assert request.target == "/hooks/a%20b/%C3%BC?x=1&y=%2F"


def test_international_host_names_are_sent_idna_encoded() -> None:
    origin, target = split_url("https://b\u00fccher.example/hooks")
    assert origin.host == "xn--bcher-kva.example" and origin.host_header == origin.host
    assert target == "/hooks"


async def test_a_kept_connection_dropped_by_the_receiver_is_replaced_once() -> None:
    """The second request lands on the kept connection, which the receiver closes without an
    answer: the sender sends it once more on a new connection (same body, same id)."""
    async with Receiver(nth({2: Answer(drop=True)})) as receiver:
        client = sender()
        assert (await client.post(receiver.url, BODY, HEADERS)).status_code == 204
        assert (await client.post(receiver.url, BODY, HEADERS)).status_code == 204
        await client.aclose()
    assert len(receiver.requests) == 3
    assert receiver.connections == 2


async def test_a_connection_closed_after_its_answer_is_not_reused() -> None:
    async with Receiver(nth({1: Answer(204, close=True)})) as receiver:
        client = sender()
        await client.post(receiver.url, BODY, HEADERS)
        await asyncio.sleep(0.05)  # the close reaches the kept connection
        assert (await client.post(receiver.url, BODY, HEADERS)).status_code == 204
        await client.aclose()
    assert len(receiver.requests) == 2
    assert receiver.connections == 2


async def test_a_new_connection_dropped_without_an_answer_fails_the_send() -> None:
    async with Receiver(lambda _n, _r: Answer(drop=True)) as receiver:
        client = sender()
        with pytest.raises(SendFailed, match="cut or malformed"):
            await client.post(receiver.url, BODY, HEADERS)
        await client.aclose()
    assert len(receiver.requests) == 1


async def test_no_answer_within_the_timeout_fails_the_send() -> None:
    async with Receiver(lambda _n, _r: Answer(delay=2.0)) as receiver:
        client = sender(timeout=0.2)
        with pytest.raises(SendFailed, match=r"no answer within 0\.2 s"):
            await client.post(receiver.url, BODY, HEADERS)
        await client.aclose()


async def test_a_closed_port_fails_the_send() -> None:
    async with Receiver() as closed:
        url = closed.url
    with pytest.raises(SendFailed, match="could not connect"):
        await sender().post(url, BODY, HEADERS)


async def test_a_large_answer_is_not_read_to_its_end_and_its_connection_not_kept() -> None:
    big = Answer(200, body=b"x" * (1024 * 1024))
    async with Receiver(nth({1: big})) as receiver:
        client = sender()
        answer = await client.post(receiver.url, BODY, HEADERS)
        assert answer.status_code == 200
        await client.post(receiver.url, BODY, HEADERS)
        await client.aclose()
    assert receiver.connections == 2


async def test_answer_headers_are_read_in_lower_case() -> None:
    async with Receiver(lambda _n, _r: Answer(429, {"Retry-After": "120"})) as receiver:
        answer = await sender().post(receiver.url, BODY, HEADERS)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "120"


def tls_server() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(CERTS / "localhost.pem", CERTS / "localhost-key.pem")
    return context


async def loopback(_host: str, _port: int) -> list[str]:
    return ["127.0.0.1"]


async def test_https_verifies_the_certificate_against_the_urls_host_name() -> None:
    trusted = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
    policy = EgressPolicy.parse("localhost, 127.0.0.0/8")
    async with Receiver(nth({}), tls=tls_server()) as receiver:
        client = sender(policy, resolver=loopback, ssl_context=trusted)
        answer = await client.post(f"https://localhost:{receiver.port}/hooks", BODY, HEADERS)
        assert answer.status_code == 204
        assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"
        # The certificate names localhost, not the address: refused, like an untrusted one.
        with pytest.raises(SendFailed, match="certificate"):
            await client.post(f"https://127.0.0.1:{receiver.port}/hooks", BODY, HEADERS)
        await client.aclose()
        with pytest.raises(SendFailed, match="certificate"):
            await sender(policy, resolver=loopback).post(
                f"https://localhost:{receiver.port}/hooks", BODY, HEADERS
            )
    assert len(receiver.requests) == 1


async def test_internal_addresses_are_refused_before_connecting() -> None:
    async with Receiver() as receiver:
        with pytest.raises(EgressRefused, match=r"127\.0\.0\.1 is a loopback address"):
            await sender(EgressPolicy.parse("")).post(receiver.url, BODY, HEADERS)
    assert receiver.connections == 0


async def test_dns_rebinding_is_judged_on_the_address_connected_to() -> None:
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])

    async def resolver(_host: str, _port: int) -> list[str]:
        return next(answers)

    policy = EgressPolicy.parse("")
    await policy.check_url("http://rebind.example/hook", resolver)  # public now: accepted
    with pytest.raises(EgressRefused, match=r"rebind\.example resolves to 127\.0\.0\.1"):
        await sender(policy, resolver=resolver).post("http://rebind.example/hook", BODY, HEADERS)
