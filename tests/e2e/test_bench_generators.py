"""wrk and h2load for real, 1 s each, against `c50k upstream` on a free loopback port.

wrk and h2load run side by side in each scenario (the numbers asserted are counts, which
sharing the mock cannot change), and the mock's behaviour is switched through PUT /control
between scenarios: one mock, three scenarios, about five seconds.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from c50k.bench.h2load import H2loadOptions, run_h2load
from c50k.bench.results import GeneratorError, GeneratorRun
from c50k.bench.wrk import MAX_INLINE_PATHS, WrkOptions, run_wrk
from c50k.stack.process import ManagedProcess, free_port, http_ok

pytestmark = pytest.mark.e2e

CONNECTIONS = 20
PATHS = [f"/posts/{i}" for i in range(1, MAX_INLINE_PATHS + 11)]  # Through the paths file.


@pytest.fixture(scope="module")
def mock_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("mock")
    posts = str(len(PATHS))
    argv = [sys.executable, "-m", "c50k", "upstream", "--port", str(port), "--posts", posts]
    with ManagedProcess("c50k upstream", argv, workdir / "upstream.log") as process:
        process.start()
        url = f"http://127.0.0.1:{port}"
        process.wait_until(lambda: http_ok(f"{url}/health"), 30.0)
        yield url


@pytest.fixture
async def mock(mock_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mock_url) as client:
        yield client
        await client.put("/control", json={"error_rate": 0.0, "status": 500})


async def both(url: str, workdir: Path) -> tuple[GeneratorRun, GeneratorRun]:
    wrk = run_wrk(
        WrkOptions(
            url=f"{url}/posts/1",
            connections=CONNECTIONS,
            threads=2,
            duration_seconds=1,
            timeout_seconds=2,
            paths=PATHS,
        ),
        workdir,
    )
    h2load = run_h2load(
        H2loadOptions(
            urls=[f"{url}/posts/1", f"{url}/posts/2"],
            clients=CONNECTIONS,
            threads=2,
            duration_seconds=1,
        ),
        workdir,
    )
    return await asyncio.gather(wrk, h2load)


async def test_healthy_mock(mock: httpx.AsyncClient, tmp_path: Path) -> None:
    await mock.post("/stats/reset")
    wrk, h2load = await both(str(mock.base_url), tmp_path)
    for run in (wrk, h2load):
        assert run.requests > 0
        assert run.socket_errors == 0
        assert run.non_2xx == 0
        assert run.latency.total == run.requests
        assert sum(ok for ok, _ in run.timeline.values()) == run.requests
        assert sum(bad for _, bad in run.timeline.values()) == 0
    assert wrk.error_bodies == 0
    assert h2load.error_bodies is None
    assert h2load.connections_served == CONNECTIONS
    # The mock saw every path of the list wrk read from its paths file.
    by_id = (await mock.get("/stats")).json()["by_id"]
    assert {f"/posts/{i}" for i in by_id} == set(PATHS)


async def test_every_answer_a_500(mock: httpx.AsyncClient, tmp_path: Path) -> None:
    await mock.put("/control", json={"error_rate": 1.0, "status": 500})
    wrk, h2load = await both(str(mock.base_url), tmp_path)
    for run in (wrk, h2load):
        assert run.requests > 0
        assert run.non_2xx == run.requests == run.status[500]
        assert sum(bad for _, bad in run.timeline.values()) == run.requests
    assert wrk.error_bodies == wrk.requests


async def test_a_200_carrying_an_error_object_is_counted(
    mock: httpx.AsyncClient, tmp_path: Path
) -> None:
    # The mock answers injected failures with {"error": "injected"}, here with status 200:
    # only the body shows the failure.
    await mock.put("/control", json={"error_rate": 1.0, "status": 200})
    wrk, h2load = await both(str(mock.base_url), tmp_path)
    assert wrk.status[200] == wrk.requests > 0
    assert wrk.error_bodies == wrk.requests
    assert sum(bad for _, bad in wrk.timeline.values()) == wrk.requests
    assert h2load.non_2xx == 0  # h2load sees statuses only: the failure is invisible to it.


async def test_refused_connection(tmp_path: Path) -> None:
    options = WrkOptions(url=f"http://127.0.0.1:{free_port()}/", connections=2, duration_seconds=1)
    with pytest.raises(GeneratorError, match="Connection refused"):
        await run_wrk(options, tmp_path)
    h2load = await run_h2load(H2loadOptions(urls=[options.url], clients=2, requests=2), tmp_path)
    assert h2load.requests == 0
    assert h2load.errors["connect"] == 2
