"""`c50k upstream`: a JSONPlaceholder-style API to test and benchmark against.

GET /posts/{id} answers a deterministic post for ids 1..posts, 404 beyond. Latency, jitter,
failures and broken bodies are set by flags and can be changed while it runs (PUT /control).
GET /stats tells what the service really sent: requests served, the maximum in flight, the
count per id and the headers of the last request.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson
from aiohttp import web

from c50k.items.demo import demo_post

# Ids counted one by one in /stats; beyond this, only the total grows (bounded memory).
MAX_TRACKED_IDS = 100_000


@dataclass
class Behaviour:
    posts: int = 100
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    # Share of requests answered with `status` instead of the post.
    error_rate: float = 0.0
    status: int = 500
    invalid_json: bool = False

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown setting {name!r}")
            current = getattr(self, name)
            if isinstance(current, bool) != isinstance(value, bool) or not isinstance(
                value, int | float
            ):
                raise ValueError(f"{name} must be a {type(current).__name__}")
            setattr(self, name, type(current)(value))


@dataclass
class Stats:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_id: Counter[int] = field(default_factory=Counter)
    last_request_headers: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_id": {str(k): v for k, v in sorted(self.by_id.items())},
            "last_request_headers": self.last_request_headers,
        }


BEHAVIOUR = web.AppKey("behaviour", Behaviour)
STATS = web.AppKey("stats", Stats)
RANDOM = web.AppKey("random", random.Random)


async def get_post(request: web.Request) -> web.Response:
    behaviour, stats = request.app[BEHAVIOUR], request.app[STATS]
    stats.requests += 1
    stats.in_flight += 1
    stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
    # aiohttp's header names are a str subclass; orjson wants plain str keys.
    stats.last_request_headers = {str(k): v for k, v in request.headers.items()}
    try:
        raw_id = request.match_info["id"]
        post_id = int(raw_id) if raw_id.isdigit() else -1
        if post_id >= 0 and (post_id in stats.by_id or len(stats.by_id) < MAX_TRACKED_IDS):
            stats.by_id[post_id] += 1
        delay = behaviour.latency_ms + request.app[RANDOM].uniform(0, behaviour.jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        response = _answer(behaviour, request.app[RANDOM], post_id)
        stats.by_status[response.status] += 1
        return response
    finally:
        stats.in_flight -= 1


def _answer(behaviour: Behaviour, rng: random.Random, post_id: int) -> web.Response:
    if behaviour.error_rate > 0 and rng.random() < behaviour.error_rate:
        return web.json_response({"error": "injected"}, status=behaviour.status)
    if not 1 <= post_id <= behaviour.posts:
        return web.json_response({}, status=404)
    if behaviour.invalid_json:
        return web.Response(body=b'{"id": ', content_type="application/json")
    return web.Response(body=orjson.dumps(demo_post(post_id)), content_type="application/json")


async def get_stats(request: web.Request) -> web.Response:
    return web.Response(
        body=orjson.dumps(request.app[STATS].as_json()), content_type="application/json"
    )


async def reset_stats(request: web.Request) -> web.Response:
    request.app[STATS] = Stats(in_flight=request.app[STATS].in_flight)
    return web.json_response({"status": "reset"})


async def get_control(request: web.Request) -> web.Response:
    return web.json_response(asdict(request.app[BEHAVIOUR]))


async def put_control(request: web.Request) -> web.Response:
    try:
        changes = orjson.loads(await request.read())
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object")
        request.app[BEHAVIOUR].update(changes)
    except (ValueError, orjson.JSONDecodeError) as exc:
        return web.json_response({"detail": str(exc)}, status=422)
    return web.json_response(asdict(request.app[BEHAVIOUR]))


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(behaviour: Behaviour, seed: int | None = None) -> web.Application:
    app = web.Application()
    app[BEHAVIOUR] = behaviour
    app[STATS] = Stats()
    app[RANDOM] = random.Random(seed)  # noqa: S311 -- fault injection, not cryptography.
    app.router.add_get("/posts/{id}", get_post)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/stats/reset", reset_stats)
    app.router.add_get("/control", get_control)
    app.router.add_put("/control", put_control)
    app.router.add_get("/health", health)
    return app


def run(host: str, port: int, behaviour: Behaviour, seed: int | None = None) -> None:
    import uvloop  # noqa: PLC0415 -- only the standalone server needs it.

    web.run_app(
        build_app(behaviour, seed),
        host=host,
        port=port,
        backlog=4096,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
        shutdown_timeout=5.0,
    )
