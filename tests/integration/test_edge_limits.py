"""What the balancer refuses before an app instance sees it: slow clients, oversized heads and
bodies, ambiguous framing, and a client's own X-Forwarded-For. Real HAProxy and nginx."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from c50k.stack.process import ManagedProcess, free_port, http_ok
from tests.integration.edge import KINDS, Edge, edge_stack
from tests.integration.load import ConstantLoad

# Slow clients are cut off after this (C50K_LB_REQUEST_TIMEOUT_SECONDS).
REQUEST_TIMEOUT = 2
SLOW_CLIENTS = 300
SLOW_RATE = 50  # New slow connections per second, as slowhttptest counts them.
SLOW_SECONDS = 12


@pytest.fixture(scope="module", params=KINDS)
def edge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Edge]:
    state_dir = tmp_path_factory.mktemp(f"edge-{request.param}")
    with edge_stack(
        state_dir, request.param, instances=2, C50K_LB_REQUEST_TIMEOUT_SECONDS=str(REQUEST_TIMEOUT)
    ) as running:
        yield running


def exchange(edge: Edge, raw: bytes, source: str = "127.0.0.1") -> bytes:
    """Send raw bytes, read until the balancer closes or 3 s pass."""
    with socket.create_connection(
        (edge.lb.host, edge.lb.port), timeout=3, source_address=(source, 0)
    ) as sock:
        sock.sendall(raw)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def put_head(marker: str, framing: str) -> str:
    """The head of a PUT that a test marks, so the instances' logs show whether it arrived."""
    return (
        f"PUT /items/5?m={marker} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n"
    )


def served_in_all(edge: Edge) -> int:
    return sum(edge.served(app) for app in edge.apps)


def reached_an_instance(edge: Edge, marker: str) -> bool:
    return any(marker in edge.app_log(app) for app in edge.apps)


def test_forwarded_for_from_a_client_is_not_believed(edge: Edge) -> None:
    marker = uuid.uuid4().hex
    raw = (
        f"GET /items/1?m={marker} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    assert status_of(exchange(edge, raw, source="127.0.0.5")) == 200
    # The access line is written once the answer has gone out, so it can trail the answer.
    edge.wait_until("logged by an instance", lambda: reached_an_instance(edge, marker), 5)
    line = next(
        line for app in edge.apps for line in edge.app_log(app).splitlines() if marker in line
    )
    # The instance believes the balancer (a trusted proxy) about the client, not the client.
    access = json.loads(line)
    assert access["client"].startswith("127.0.0.5:"), line
    assert "6.6.6.6" not in line


@pytest.mark.parametrize(
    ("what", "head"),
    [
        ("header", "GET /items/1?m={m} HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"),
        ("request line", "GET /items/1?m={m}&pad={big} HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("header block", "GET /items/1?m={m} HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
    ],
)
def test_oversized_heads_are_refused_at_the_balancer(edge: Edge, what: str, head: str) -> None:
    marker = uuid.uuid4().hex
    many = "".join(f"X-H{i}: {'v' * 200}\r\n" for i in range(200))
    raw = head.format(m=marker, big="a" * 20_000, many=many).encode()
    status = status_of(exchange(edge, raw))
    assert 400 <= status < 500, what
    assert not reached_an_instance(edge, marker)


def test_oversized_body_is_refused_before_it_is_sent(edge: Edge) -> None:
    marker = uuid.uuid4().hex
    raw = put_head(marker, f"Content-Length: {10 * 65_536}\r\n").encode()
    assert status_of(exchange(edge, raw)) == 413
    assert not reached_an_instance(edge, marker)


AMBIGUOUS = {
    "two content lengths": "Content-Length: 4\r\nContent-Length: 5\r\n",
    "a list of lengths": "Content-Length: 4, 5\r\n",
    "two transfer encodings": "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
}


@pytest.mark.parametrize("coding", ["chunked, identity", "xchunked"])
def test_unknown_transfer_coding_never_reaches_an_instance(edge: Edge, coding: str) -> None:
    marker = uuid.uuid4().hex
    raw = (put_head(marker, f"Transfer-Encoding: {coding}\r\n") + "0\r\n\r\n").encode()
    # HAProxy: 400; nginx: 501 Not Implemented.
    assert status_of(exchange(edge, raw)) in (400, 501)
    assert not reached_an_instance(edge, marker)


@pytest.mark.parametrize("framing", list(AMBIGUOUS))
def test_ambiguous_framing_is_refused_with_400(edge: Edge, framing: str) -> None:
    marker = uuid.uuid4().hex
    raw = (put_head(marker, AMBIGUOUS[framing]) + "0\r\n\r\n").encode()
    assert status_of(exchange(edge, raw)) == 400
    assert not reached_an_instance(edge, marker)


def test_content_length_with_chunked_cannot_smuggle(edge: Edge) -> None:
    """nginx refuses Content-Length with Transfer-Encoding (400). HAProxy 2.6 takes RFC 9112's
    other lawful path: it drops Content-Length and forwards chunked framing only. Either way
    the request hidden behind the Content-Length framing is never a request of its own to an
    instance that the balancer did not see as one."""
    marker = uuid.uuid4().hex
    hidden = f"GET /items/7?smuggled={marker} HTTP/1.1\r\nHost: x\r\n\r\n"
    body = f"0\r\n\r\n{hidden}"
    framing = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    raw = (put_head(marker, framing) + body).encode()
    answer = exchange(edge, raw)
    if edge.kind == "nginx":
        assert status_of(answer) == 400
        assert not reached_an_instance(edge, marker)
    else:
        # The instance got the PUT with an empty chunked body (422: not a JSON object), no
        # Content-Length, and the balancer closed after it: the hidden bytes went nowhere.
        assert status_of(answer) == 422
        assert answer.count(b"HTTP/1.1 ") == 1
        assert not reached_an_instance(edge, f"smuggled={marker}")


def test_slow_clients_are_cut_off_while_others_are_served(edge: Edge, tmp_path: Path) -> None:
    prefix = tmp_path / "slow"
    url = f"{edge.url}/items/1"
    slowloris = [
        "slowhttptest", "-H", "-c", str(SLOW_CLIENTS), "-r", str(SLOW_RATE), "-i", "1",
        "-x", "10", "-p", "3", "-l", str(SLOW_SECONDS), "-u", url, "-g", "-o", str(prefix),
    ]  # fmt: skip
    with ConstantLoad(edge.url, rate=100) as load:
        result = subprocess.run(
            slowloris,
            capture_output=True,
            text=True,
            timeout=SLOW_SECONDS + 30,
            check=False,
        )
        report = load.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    with prefix.with_suffix(".csv").open() as file:
        rows = list(csv.DictReader(file))
    # Each slow connection lives one request timeout (2 s) while they arrive over about 4 s:
    # never were most of them open at once, and by the end the balancer had closed most.
    assert max(int(r["Connected"]) for r in rows) <= 0.7 * SLOW_CLIENTS, rows
    assert int(rows[-1]["Closed"]) >= 0.6 * SLOW_CLIENTS, rows
    assert report.failures == [], report.failures[:10]
    assert report.ok > 0
    # Normal traffic kept its latency: a generous bound, for a machine shared with other
    # tests; without the cut-off, slow clients would hold every connection the balancer has.
    assert report.percentile(0.99) < 2.0, report.percentile(0.99)


def test_haproxy_queues_beyond_maxconn_then_answers_503(tmp_path: Path) -> None:
    """One request at a time per instance (maxconn 1), an upstream that takes 1.5 s: of eight
    requests at once, two are served, the rest wait in HAProxy's queue and get its 503 after
    the queue timeout, without ever reaching an instance."""
    upstream_port = free_port()
    upstream = ManagedProcess(
        "c50k upstream",
        [sys.executable, "-m", "c50k", "upstream", "--port", str(upstream_port),
         "--latency-ms", "1500"],
        tmp_path / "upstream.log",
    ).start()  # fmt: skip
    with upstream:
        upstream.wait_until(lambda: http_ok(f"http://127.0.0.1:{upstream_port}/health"), 30)
        with (
            edge_stack(
                tmp_path / "stack",
                "haproxy",
                instances=2,
                C50K_UPSTREAM_URL=f"http://127.0.0.1:{upstream_port}/posts/{{id}}",
                C50K_CACHE_ENABLED="false",
                C50K_LB_MAXCONN_PER_SERVER="1",
                C50K_LB_QUEUE_TIMEOUT_SECONDS="0.5",
            ) as edge,
            ThreadPoolExecutor(8) as pool,
        ):
            statuses = list(
                pool.map(lambda i: httpx.get(f"{edge.url}/items/{i}", timeout=10).status_code,
                         range(1, 9))
            )  # fmt: skip
            # Access lines are written once the answers have gone out: wait for the two.
            edge.wait_until("both answers logged", lambda: served_in_all(edge) >= 2, 5)
            reached = served_in_all(edge)
            # A request that reached an instance (cache off) asked the upstream for its item
            # and the related one at once, long before the last answer came back: the
            # upstream's count holds every request that ever reached an instance.
            stats = httpx.get(f"http://127.0.0.1:{upstream_port}/stats", timeout=10).json()
    assert sorted(statuses) == [200, 200] + [503] * 6, statuses
    assert reached == 2
    assert stats["requests"] == 2 * reached, stats
