"""Typed settings: the one source of truth for every tier and every rendered file.

Environment variables use the `C50K_` prefix and one underscore between the group and the
field, so `C50K_UPSTREAM_URL` sets `upstream.url` and `C50K_SERVER_WORKERS` sets
`server.workers`. docs/configuration.md lists every variable; `c50k config docs` writes it.
"""

from __future__ import annotations

import math
import os
import resource
from contextvars import ContextVar
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from c50k.inventory import Instance, format_instances, parse_instances

# Files a worker keeps for itself beyond client connections: listening socket, logs, the
# store's files, the event loop's own descriptors, and connections that are being refused.
RESERVED_FILES_PER_WORKER = 256

# A TOML file of settings (`c50k stack up` writes one); C50K_* variables override it.
SETTINGS_FILE_ENV = "C50K_SETTINGS_FILE"
# After SIGTERM a worker drains, finishes its requests, then closes its pools (this long).
WORKER_CLOSE_SECONDS = 2
# ... and gunicorn's master exits this long after its last worker.
MASTER_EXIT_SECONDS = 3

# Largest item id: ids are signed 64-bit integers in every store.
MAX_ITEM_ID = 2**63 - 1


# Of the memory the workers share, what they may fill before refusing new requests.
MEMORY_SHARE = 0.9
CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")


def machine_memory_bytes() -> int:
    """Physical memory, or the cgroup's limit when it is lower (a container)."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = CGROUP_MEMORY_MAX.read_text().strip()
    except OSError:
        return physical
    return min(physical, int(limit)) if limit.isdigit() else physical


def connection_budget_for(nofile: int, upstream_connections: int) -> int:
    """Connections a worker may hold with `nofile` files: the rest go to the upstream pool and
    to RESERVED_FILES_PER_WORKER."""
    return max(1, nofile - upstream_connections - RESERVED_FILES_PER_WORKER)


def address_list(value: str) -> str:
    """One address, or several comma-separated: normalised, none empty."""
    addresses = [a.strip() for a in value.split(",")]
    if not all(addresses):
        raise ValueError("host must be one address or a comma-separated list of them")
    return ",".join(addresses)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ServerSettings(BaseModel):
    host: str = Field(
        default="127.0.0.1",
        description="Address to bind; several, comma-separated (e.g. 127.0.0.1,127.0.0.2).",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="Port to bind.")
    # One asyncio worker per core: the event loop is the unit of parallelism (BENCHMARKS.md).
    workers: int = Field(
        default_factory=_cpu_count, ge=1, description="Worker processes (default: CPU count)."
    )
    backlog: int = Field(
        default=4096, ge=64, description="Listen backlog; the kernel caps it at somaxconn."
    )
    # Longer than any proxy's idle timeout (nginx 60 s, HAProxy's rendered 30 s), so a proxy
    # never reuses a socket the app has just closed.
    keepalive_seconds: int = Field(
        default=75, ge=1, description="Idle keep-alive; keep it above the load balancer's."
    )
    # 30 s killed workers in a 50,000-connection storm on 2 cores (BENCHMARKS.md); 300 s did not.
    worker_timeout_seconds: int = Field(
        default=300, ge=10, description="gunicorn restarts a worker silent this long."
    )
    # fall 2 x inter 1 s at the load balancer: 3 s takes the node out before it stops.
    drain_seconds: float = Field(
        default=3.0, ge=0, description="After SIGTERM, /ready answers 503 this long first."
    )
    graceful_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Then in-flight requests get this long to finish."
    )
    max_requests: int = Field(
        default=0, ge=0, description="Restart a worker after this many requests (0: never)."
    )
    max_requests_jitter: int = Field(
        default=0, ge=0, description="Random extra requests, so workers restart apart."
    )
    reuse_port: bool = Field(default=True, description="SO_REUSEPORT on the listening socket.")
    access_log: bool = Field(
        default=False, description="Log every request, with its request id (costs throughput)."
    )
    max_connections_per_worker: int | None = Field(
        default=None,
        ge=1,
        description="Connections a worker holds before answering 503 "
        "(default: open-file limit minus upstream pool minus 256).",
    )
    # Admission is by waiting time (api/shedding.py). 10 s: a closed loop of 50,000
    # connections on 4 workers of a 2-core machine queues each request a few seconds at most
    # (BENCHMARKS.md), and a balancer's server timeout (30 s rendered) must cover the queue
    # plus the request deadline.
    max_queue_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A request that waited longer than this for its worker's event loop is "
        "answered 503, and new ones are refused until the queue has drained to half of it.",
    )
    queue_target_seconds: float = Field(
        default=0.0,
        ge=0,
        description="A latency objective for time in the worker: when every answer of an "
        "interval took at least this long, the worker limits the requests it holds "
        "(adaptively) and refuses the rest at the door (0: off; only the maximum applies).",
    )
    queue_interval_seconds: float = Field(
        default=0.1,
        gt=0,
        description="How often the adaptive limit of a queue target is judged and adjusted.",
    )
    max_in_flight: int = Field(
        default=0,
        ge=0,
        description="Requests a worker works on at once; more get a fast 503 (0: no count "
        "limit; admission is by waiting time).",
    )
    memory_limit_mb: int | None = Field(
        default=None,
        ge=16,
        description="Resident memory of a worker above which it refuses new requests "
        "(default: 90% of the machine's or its cgroup's memory, shared by the workers).",
    )
    # Never "*": uvicorn would believe the leftmost X-Forwarded-For, which the client writes.
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies whose X-Forwarded-For is believed: the load balancers' addresses "
        '(never "*").',
    )

    @field_validator("host")
    @classmethod
    def _addresses_listed(cls, value: str) -> str:
        return address_list(value)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies_named(cls, value: str) -> str:
        if "*" in value:
            raise ValueError(
                'forwarded_allow_ips must name the load balancers, never "*": the client '
                "writes X-Forwarded-For"
            )
        return value

    @property
    def binds(self) -> list[str]:
        return [
            f"[{a}]:{self.port}" if ":" in a else f"{a}:{self.port}" for a in self.host.split(",")
        ]

    @model_validator(mode="after")
    def _target_below_maximum(self) -> ServerSettings:
        if self.queue_target_seconds >= self.max_queue_seconds:
            raise ValueError(
                f"queue_target_seconds ({self.queue_target_seconds}) must be below "
                f"max_queue_seconds ({self.max_queue_seconds})"
            )
        return self

    def memory_limit_bytes(self) -> int:
        """Resident memory one worker may use before it refuses new requests."""
        if self.memory_limit_mb is not None:
            return self.memory_limit_mb * 1024 * 1024
        return int(MEMORY_SHARE * machine_memory_bytes() / self.workers)

    def connection_budget(self, upstream_connections: int) -> int:
        """Connections a worker accepts before it answers 503 instead of running out of files."""
        if self.max_connections_per_worker is not None:
            return self.max_connections_per_worker
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            soft = 1_048_576
        return connection_budget_for(soft, upstream_connections)

    @property
    def worker_stop_seconds(self) -> int:
        """How long gunicorn lets a worker stop before it kills it: the drain, then in-flight
        requests, then closing pools."""
        return math.ceil(self.drain_seconds + self.graceful_timeout_seconds) + WORKER_CLOSE_SECONDS

    @property
    def stop_seconds(self) -> int:
        """How long an instance (gunicorn's master and its workers) may take to stop after
        SIGTERM before a process manager kills it."""
        return self.worker_stop_seconds + MASTER_EXIT_SECONDS


class UpstreamSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="Upstream URL template with {id}, e.g. http://127.0.0.1:9000/posts/{id}; "
        "unset: items come from the store only.",
    )
    timeout_seconds: float = Field(default=2.0, gt=0, description="Per upstream call, in total.")
    connect_timeout_seconds: float = Field(default=1.0, gt=0, description="To connect.")
    max_connections: int = Field(
        default=256, ge=1, description="Pooled connections per worker; more calls wait."
    )
    keepalive_seconds: float = Field(
        default=30.0, gt=0, description="Idle pooled connections close after this."
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1, description="Larger upstream answers are refused."
    )

    @field_validator("url")
    @classmethod
    def _template_has_one_id(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("upstream url must start with http:// or https://")
        if value.count("{id}") != 1 or value.count("{") != 1:
            raise ValueError("upstream url must contain the placeholder {id} exactly once")
        return value


class StoreSettings(BaseModel):
    backend: Literal["sqlite", "memory", "postgres"] = Field(
        default="sqlite",
        description="sqlite: one file, durable. postgres: the shards of C50K_POSTGRES_SHARDS. "
        "memory: per worker, lost on exit (tests, benchmarks).",
    )
    sqlite_path: Path = Field(default=Path("var/c50k.sqlite3"), description="The SQLite file.")
    sqlite_busy_timeout_seconds: float = Field(
        default=5.0, gt=0, description="A writer waits this long for another worker's write."
    )


class ShardSettings(BaseModel):
    primary: str = Field(description="DSN of the shard's primary, postgresql://user@host:port/db.")
    replicas: list[str] = Field(default_factory=list, description="DSNs of its read replicas.")
    # Which slots this shard owns, as ranges: "0-2047,4096-4100". Unset on every shard: the
    # slots are split evenly, in shard order.
    slots: str | None = Field(default=None, description="Slot ranges this shard owns.")

    @field_validator("primary", "replicas")
    @classmethod
    def _postgres_dsn(cls, value: str | list[str]) -> str | list[str]:
        for dsn in [value] if isinstance(value, str) else value:
            if not dsn.startswith(("postgresql://", "postgres://")):
                raise ValueError(f"{dsn!r} is not a postgresql:// DSN")
        return value


class PostgresSettings(BaseModel):
    # JSON in the environment: [{"primary": "postgresql://...", "replicas": ["..."]}, ...].
    shards: list[ShardSettings] = Field(
        default_factory=list,
        description='Shards, each {"primary": DSN, "replicas": [DSN, ...]} (JSON in the env).',
    )
    # Fixed forever once data is written: an id's slot is crc32(id) % slots. Moving slots
    # between shards is a slot-map change; changing this number would move every item.
    slots: int = Field(default=4096, ge=1, le=65536, description="Hash slots ids map to.")
    # A worker's pool to each server opens connections as reads need them, up to
    # pool_size + max_overflow (the connection budget counts both), and closes one idle for
    # 5 minutes. A connection broken by a server restart is dropped when a statement finds it
    # so, and the statement runs once more on a fresh one: no test query before each use.
    pool_size: int = Field(default=10, ge=1, description="Pooled connections per server.")
    max_overflow: int = Field(default=5, ge=0, description="Extra connections under bursts.")
    pool_timeout_seconds: float = Field(
        default=2.0, gt=0, description="A query waits this long for a pooled connection."
    )
    pool_recycle_seconds: float = Field(
        default=1800.0, gt=0, description="Connections are replaced this often."
    )
    connect_timeout_seconds: float = Field(default=2.0, gt=0, description="To connect.")
    statement_timeout_seconds: float = Field(
        default=2.0, gt=0, description="Server-side limit of one statement."
    )
    max_replica_lag_seconds: float = Field(
        default=1.0, gt=0, description="A replica further behind serves no reads."
    )
    health_interval_seconds: float = Field(
        default=0.5, gt=0, description="How often each worker checks replicas' health and lag."
    )
    read_your_writes_seconds: float = Field(
        default=5.0,
        ge=0,
        description="After a write, this worker reads the item only from a server that "
        "replayed it, this long.",
    )
    pgbouncer: bool = Field(
        default=False,
        description="The DSNs point at PgBouncer in transaction mode: no prepared-statement "
        "cache, unique statement names.",
    )


class CacheSettings(BaseModel):
    enabled: bool = Field(
        default=True,
        description="false: every read reaches the store and the upstream (no cache, "
        "no single-flight); the fan-out benchmark uses this.",
    )
    ttl_seconds: float = Field(default=10.0, gt=0, description="Found items live this long.")
    negative_ttl_seconds: float = Field(
        default=2.0, ge=0, description='"Item not found" lives this long (0: not cached).'
    )
    max_items: int = Field(
        default=100_000, ge=1, description="Entries per worker; least recently used go first."
    )
    # Half the TTL: a refresh waits one loop iteration per await, seconds on a saturated
    # worker, and must land before the entry expires.
    refresh_ahead: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A hit on an entry older than this share of its TTL reloads it in the "
        "background, so hot entries never expire (1: reload only once expired).",
    )
    stale_while_revalidate_seconds: float = Field(
        default=5.0,
        ge=0,
        description="After its TTL an item is served stale this long while one refresh runs.",
    )
    stale_if_error_seconds: float = Field(
        default=60.0,
        ge=0,
        description="After its TTL an item is served stale this long when its refresh fails.",
    )


class RedisSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="redis://host:port/db of the shared cache; unset: the in-process cache only.",
    )
    # Tens of milliseconds: a Redis that is down or stalled must cost a request little, and the
    # breaker stops even that after a few failures (docs/cache.md: redis-py waits forever by
    # default).
    connect_timeout_seconds: float = Field(default=0.05, gt=0, description="To connect.")
    socket_timeout_seconds: float = Field(default=0.05, gt=0, description="Per command.")
    max_connections: int = Field(
        default=64, ge=1, description="Pooled connections per worker; more commands wait."
    )
    breaker_failures: int = Field(
        default=5, ge=1, description="Failures in a row that open the breaker (Redis skipped)."
    )
    breaker_open_seconds: float = Field(
        default=1.0, gt=0, description="The breaker stays open this long, then lets one call try."
    )
    # Covers one upstream call (2 s by default): the loader keeps the lease while it loads.
    lease_ms: int = Field(
        default=2000,
        ge=10,
        description="One loader per key across the fleet holds a lease this long; the others "
        "wait for its value at most this long, then load themselves.",
    )
    namespace: str = Field(default="c50k", min_length=1, description="Prefix of every key.")
    # Bump it when the value format changes: old keys are then never read, and expire.
    version: int = Field(default=1, ge=1, description="Key version; bump to drop every entry.")
    local: bool = Field(
        default=True, description="Keep the in-process layer in front of Redis (false: Redis only)."
    )
    local_ttl_seconds: float = Field(
        default=1.0,
        gt=0,
        description="In-process entries live this long while the worker may miss invalidations "
        "(Redis down, its channel silent); while it hears them, as long as in Redis.",
    )
    heartbeat_seconds: float = Field(
        default=0.5,
        gt=0,
        description="Each worker publishes to itself this often; 3 beats unheard and it clears "
        "its in-process layer (the bound on a lost invalidation).",
    )
    ttl_jitter: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Redis TTLs are longer, and in-process ones in front of Redis shorter, by "
        "a random share up to this.",
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis url must start with redis://, rediss:// or unix://")
        return value


class RequestSettings(BaseModel):
    deadline_seconds: float = Field(
        default=3.0, gt=0, description="Total time for both sides of GET /items/{id}."
    )
    max_body_bytes: int = Field(default=65_536, ge=1, description="Largest PUT body (413 above).")
    page_limit_max: int = Field(default=1000, ge=1, description="Largest GET /items page.")


class LbSettings(BaseModel):
    """The edge tier: which app instances the load balancer spreads over, and how it guards
    them. `c50k render haproxy|nginx` and `c50k stack up --lb` read this group."""

    instances: str = Field(
        default="127.0.0.1:8000",
        description="App instances behind the load balancer: host:port[@weight], comma-separated "
        "(weight 1..256, default 100).",
    )
    algorithm: Literal["leastconn", "roundrobin"] = Field(
        default="leastconn", description="How HAProxy and nginx pick an instance."
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address the load balancer listens on (faces clients); several, "
        "comma-separated.",
    )
    port: int = Field(
        default=8080, ge=1, le=65535, description="Port the load balancer listens on."
    )
    connections: int = Field(
        default=50_000,
        ge=1,
        description="Client connections the load balancer holds; sizes maxconn and nginx workers.",
    )
    # The reference machine's hard limit. A proxied connection holds two files (client and
    # instance), so one process holds about half this many clients.
    nofile: int = Field(
        default=20_000, ge=1024, description="Open-file limit of one load-balancer process."
    )
    maxconn_per_server: int = Field(
        default=1000,
        ge=1,
        description="Requests HAProxy has in flight on one instance; more wait in its queue.",
    )
    queue_timeout_seconds: float = Field(
        default=5.0, gt=0, description="A request queued this long gets 503 from HAProxy."
    )
    connect_timeout_seconds: float = Field(
        default=2.0, gt=0, description="To connect to an instance (then retry another)."
    )
    # Above the request deadline (3 s): an instance slower than this is presumed hung.
    server_timeout_seconds: float = Field(
        default=30.0, gt=0, description="An instance's answer may take this long."
    )
    # Below the app's keep-alive (75 s), so the balancer, not the app, closes idle connections.
    client_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Idle client and instance connections close after this."
    )
    request_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="A client must send its request head (and nginx: each body read) within "
        "this; slow clients are cut off.",
    )
    max_header_bytes: int = Field(
        default=8192,
        ge=1024,
        description="Largest request line or header line (nginx: 4 of these hold the head; "
        "HAProxy: the head fits a buffer of this plus 1 KiB, at least 16 KiB); more gets 4xx.",
    )
    check_interval_seconds: float = Field(
        default=1.0, gt=0, description="HAProxy checks GET /ready this often (fall 2, rise 2)."
    )
    microcache: bool = Field(
        default=False, description="nginx caches 200 answers of GET /items/{id} briefly."
    )
    microcache_seconds: float = Field(
        default=1.0, gt=0, description="How long the nginx micro-cache keeps an answer."
    )

    @field_validator("host")
    @classmethod
    def _addresses_listed(cls, value: str) -> str:
        return address_list(value)

    @property
    def binds(self) -> list[str]:
        return [
            f"[{a}]:{self.port}" if ":" in a else f"{a}:{self.port}" for a in self.host.split(",")
        ]

    @field_validator("instances")
    @classmethod
    def _inventory_parses(cls, value: str) -> str:
        return format_instances(parse_instances(value))

    @property
    def inventory(self) -> list[Instance]:
        return parse_instances(self.instances)


class LogSettings(BaseModel):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of gunicorn, uvicorn and c50k."
    )
    format: Literal["json", "console"] = Field(
        default="json",
        description="json: one JSON object a line (structlog), with the request id; "
        "console: for people at a terminal.",
    )
    request_id: bool = Field(
        default=True,
        description="Take X-Request-ID (or make one), return it, log it, send it upstream.",
    )


class MetricsSettings(BaseModel):
    enabled: bool = Field(
        default=True, description="Prometheus metrics of every worker, summed by an exporter."
    )
    host: str = Field(
        default="127.0.0.1", description="Address of the metrics exporter (not the API's)."
    )
    port: int = Field(
        default=9101, ge=0, le=65535, description="Port of the metrics exporter: GET /metrics."
    )
    multiproc_dir: Path | None = Field(
        default=None,
        description="Where workers write their metrics; wiped at start "
        "(unset: a new temporary directory per master).",
    )
    flush_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Workers count in memory and publish this often (and when they stop).",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="C50K_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    server: ServerSettings = Field(default_factory=ServerSettings, description="c50k serve")
    upstream: UpstreamSettings = Field(
        default_factory=UpstreamSettings, description="The upstream HTTP API"
    )
    store: StoreSettings = Field(default_factory=StoreSettings, description="The item store")
    postgres: PostgresSettings = Field(
        default_factory=PostgresSettings, description="PostgreSQL shards and pools"
    )
    cache: CacheSettings = Field(default_factory=CacheSettings, description="The in-process cache")
    redis: RedisSettings = Field(
        default_factory=RedisSettings, description="The Redis cache tier (shared by every worker)"
    )
    request: RequestSettings = Field(
        default_factory=RequestSettings, description="Limits of one request"
    )
    log: LogSettings = Field(default_factory=LogSettings, description="Logging")
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings, description="Prometheus metrics"
    )
    lb: LbSettings = Field(
        default_factory=LbSettings, description="The load balancer and its app instances"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _settings_file.get() or os.environ.get(SETTINGS_FILE_ENV)
        if not path:
            return (init_settings, env_settings)
        if not Path(path).is_file():
            raise ValueError(f"{SETTINGS_FILE_ENV}={path}: no such file")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, Path(path)))

    @model_validator(mode="after")
    def _postgres_has_shards(self) -> Settings:
        if self.store.backend == "postgres" and not self.postgres.shards:
            raise ValueError(
                "store backend postgres needs C50K_POSTGRES_SHARDS "
                '(e.g. [{"primary": "postgresql://postgres@127.0.0.1:5432/c50k"}])'
            )
        return self

    @model_validator(mode="after")
    def _deadline_covers_one_call(self) -> Settings:
        if self.request.deadline_seconds < self.upstream.timeout_seconds:
            raise ValueError(
                f"request deadline ({self.request.deadline_seconds} s) is shorter than one "
                f"upstream call's timeout ({self.upstream.timeout_seconds} s)"
            )
        return self


# The file `instance_settings` reads in place of C50K_SETTINGS_FILE's.
_settings_file: ContextVar[Path | None] = ContextVar("settings_file", default=None)


def instance_settings(settings_file: Path) -> Settings:
    """What a process started with C50K_SETTINGS_FILE=`settings_file` in this environment
    reads: the stack's view of an app instance it starts."""
    token = _settings_file.set(settings_file)
    try:
        return Settings()
    finally:
        _settings_file.reset(token)


def configuration_table() -> str:
    """docs/configuration.md's table, generated from the fields above so it cannot drift."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for group_name, group in Settings.model_fields.items():
        model = group.default_factory
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"settings group {group_name} must default to a model")
        lines.append(f"| **{group.description}** | | |")
        for name, field in model.model_fields.items():
            if field.default_factory is not None:
                produced = field.default_factory()  # type: ignore[call-arg]
                default = "derived" if name == "workers" else f"`{produced}`"
            elif field.default is None:
                default = "unset"
            elif isinstance(field.default, bool):
                default = f"`{str(field.default).lower()}`"
            else:
                default = f"`{field.default}`"
            env = f"`C50K_{group_name.upper()}_{name.upper()}`"
            lines.append(f"| {env} | {default} | {field.description or ''} |")
    return "\n".join(lines) + "\n"
