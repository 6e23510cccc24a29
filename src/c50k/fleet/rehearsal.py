"""`c50k fleet rehearse up | status | down`: the fleet on this machine. Each host is a network
namespace on one bridge (the private subnet, on a random 10.x network that no route of this
machine covers); each runs the files and unit command lines its cloud-init would install
(cloudinit.host_setup, paths under the host's own directory), as the unit's user. HAProxy in a
namespace of its own stands in for the NodeBalancer: the same check path and interval, on
addresses of the balancer range. Only what `up` created, and recorded, is ever touched."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from c50k.fleet import netns
from c50k.fleet.cloudinit import HostLayout, HostSetup, host_setup
from c50k.fleet.plan import Host, SettingsDoc, app_settings, hosts
from c50k.fleet.spec import FleetSpec
from c50k.fleet.units import ServiceUnit, parse_unit, read_environment_file
from c50k.render.files import Placement, binary, lb_processes, render
from c50k.settings import Settings
from c50k.stack.postgres import Cluster, bindir
from c50k.stack.process import ManagedProcess, http_ok
from c50k.stack.redis import answers_ping
from c50k.stack.redis import binary as redis_binary
from c50k.stack.state import ServiceRecord, StackError, StackState

DEFAULT_STATE_DIR = Path("var/fleet")
NETWORK_FILE = "network.json"
BALANCER = "nodebalancer"
BALANCER_PORT = 80
# The load generator's connections spread over these: one source address reaches one
# destination ip:port through ~28,000 ephemeral ports.
BALANCER_ADDRESSES = 4
READY_SECONDS = 120.0
# A clean environment, as systemd gives a unit; the unit adds its own variables.
SYSTEM_PYTHON = "/usr/bin/python3"
BASE_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}


@dataclass
class Network:
    """What `up` created and `down` removes: these names, and nothing else."""

    tag: str
    subnet: str
    bridge: str
    namespaces: dict[str, str] = field(default_factory=dict)  # host -> namespace
    links: dict[str, str] = field(default_factory=dict)  # host -> veth name prefix
    balancer_addresses: list[str] = field(default_factory=list)

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / NETWORK_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> Network | None:
        path = state_dir / NETWORK_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    @property
    def urls(self) -> list[str]:
        return [f"http://{a}:{BALANCER_PORT}" for a in self.balancer_addresses]


def rehearsal_spec(spec: FleetSpec, network: str) -> FleetSpec:
    """The spec moved onto `network` (a /24), the balancer range at the same offset."""
    old = ipaddress.ip_network(spec.subnet)
    new = ipaddress.ip_network(network)
    balancer = ipaddress.ip_network(spec.balancer_range)
    offset = int(balancer.network_address) - int(old.network_address)
    moved = f"{new.network_address + offset}/{balancer.prefixlen}"
    return spec.model_copy(update={"subnet": network, "balancer_range": moved})


def _free_network() -> str:
    for _ in range(50):
        candidate = f"10.{100 + secrets.randbelow(150)}.{secrets.randbelow(256)}.0/24"
        if not netns.routed(candidate):
            return candidate
    raise StackError("no free 10.x.y.0/24 network for the rehearsal")


def _owned(path: Path, user: str, mode: int = 0o755) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _ensure_user(user: str) -> None:
    """As cloud-init's `users:` does on a host: a system user without login or home."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip


def as_user(namespace: str, user: str, argv: list[str]) -> list[str]:
    """`argv` inside `namespace` as `user`; `ip netns exec` and setpriv both exec, so the PID
    is the program's own."""
    prefix = ["ip", "netns", "exec", namespace]
    if user != "root":
        prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    return prefix + argv


def _install(setup: HostSetup, layout: HostLayout) -> None:
    """write_files, with the host's root in front of every path."""
    for file in setup.files:
        path = Path(file.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.content)
        path.chmod(int(file.mode, 8))
    for user in setup.users:
        _ensure_user(user)


def install_c50k(state_dir: Path) -> str:
    """What cloud-init does on a host: a virtualenv of the system's python3 (Debian's, which
    every service user can run), c50k installed into it; here from this source checkout,
    editable, so the rehearsal runs the code of the checkout. Made once, again when the
    dependencies change. Returns its python."""
    source = Path(__file__).resolve().parents[3]
    if not (source / "pyproject.toml").exists():
        raise StackError("the rehearsal installs c50k from its source checkout (pyproject.toml)")
    venv = (state_dir / "venv").resolve()
    stamp = venv / ".c50k-installed"
    wanted = hashlib.sha256(
        (source / "pyproject.toml").read_bytes() + (source / "constraints.txt").read_bytes()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return str(venv / "bin" / "python")
    shutil.rmtree(venv, ignore_errors=True)
    for argv in (
        [SYSTEM_PYTHON, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", "--constraint",
         str(source / "constraints.txt"), "--editable", str(source)],
    ):  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0:
            raise StackError(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    stamp.write_text(wanted)
    return str(venv / "bin" / "python")


class Rehearsal:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.state = StackState.load(state_dir)
        venv = (state_dir / "venv" / "bin" / "python").resolve()
        self.python = str(venv) if venv.exists() else sys.executable

    def layout(self, host: str) -> HostLayout:
        return HostLayout(
            root=str((self.state_dir / "hosts" / host).resolve()),
            python=self.python,
            postgres_bindir=str(bindir()),
            redis_server=redis_binary(),
            haproxy=binary("haproxy"),
        )

    def _run(self, namespace: str, unit: ServiceUnit, argv: list[str], log: Path) -> None:
        env = self._environment(unit)
        with log.open("ab") as out:
            result = subprocess.run(
                as_user(namespace, unit.user, argv),
                env=env, cwd=unit.working_directory or "/", stdout=out, stderr=subprocess.STDOUT,
                timeout=READY_SECONDS * 3, check=False,
            )  # fmt: skip
        if result.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise StackError(f"{' '.join(argv)} failed in {namespace}:\n{tail}")

    def _environment(self, unit: ServiceUnit) -> dict[str, str]:
        files: dict[str, str] = {}
        for path in unit.environment_files:
            files |= read_environment_file(path)
        home = unit.working_directory or "/nonexistent"
        return {**BASE_ENVIRONMENT, "HOME": home, **unit.environment, **files}

    def start_unit(
        self, host: Host, namespace: str, layout: HostLayout, name: str, text: str
    ) -> ServiceRecord:
        """What `systemctl start` does with the unit: its directories, ExecStartPre, the
        process, ExecStartPost."""
        unit = parse_unit(text)
        for directory in unit.state_directories:
            _owned(
                Path(layout.state(directory)),
                unit.user,
                0o700 if "postgres" in directory else 0o755,
            )
        for directory in unit.runtime_directories:
            _owned(Path(layout.runtime(directory)), unit.user)
        log = Path(layout.path("/var/log")) / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        for argv in unit.exec_start_pre:
            self._run(namespace, unit, argv, log)
        process = ManagedProcess(
            f"{host.name}/{name}",
            as_user(namespace, unit.user, unit.exec_start),
            log,
            env=self._environment(unit),
            cwd=Path(unit.working_directory) if unit.working_directory else None,
        ).start()
        record = ServiceRecord(
            name=f"{host.name}/{name}",
            kind=host.role,
            pid=process.pid,
            started=process.started,
            host=host.address,
            port=0,
            log=str(log),
            stop_signal=unit.kill_signal,
            stop_timeout=unit.timeout_stop_seconds,
            extra={"namespace": namespace, "unit": name},
        )
        self.state.add(record)
        process.detach()
        for argv in unit.exec_start_post:
            self._run(namespace, unit, argv, log)
        return record

    def restart(self, spec: FleetSpec, name: str) -> ServiceRecord:
        """`systemctl restart` of one unit: its stop signal (an app drains first), then the
        unit started again from the files installed on its host."""
        record = self.state.named(name)
        record.stop()
        self.state.services.remove(record)
        self.state.save()
        host = next(h for h in hosts(spec) if h.name == name.split("/", maxsplit=1)[0])
        layout = self.layout(host.name)
        unit = str(record.extra["unit"])
        text = Path(layout.path(f"/etc/systemd/system/{unit}")).read_text()
        restarted = self.start_unit(host, str(record.extra["namespace"]), layout, unit, text)
        self.wait_ready(host, spec, restarted)
        return restarted

    def wait_ready(self, host: Host, spec: FleetSpec, process: ServiceRecord) -> None:
        if host.role in ("postgres-primary", "postgres-replica"):
            cluster = Cluster(
                host.name, Path("/nonexistent"), host.address, spec.postgres_port, "", 0
            )
            ready = cluster.ready
        elif host.role == "redis":

            def ready() -> bool:
                return answers_ping(host.address, spec.redis_port)
        else:
            url = f"http://{host.address}:{spec.app_port}/ready"

            def ready() -> bool:
                return http_ok(url)

        _wait_for(ready, process, f"{process.name} ready")

    def start_balancer(self, network: Network, doc: SettingsDoc) -> None:
        """HAProxy for the NodeBalancer: the fleet's settings (check path /ready, interval,
        instances), listening on the balancer range, as many processes as the connections
        need (they share the port through SO_REUSEPORT)."""
        settings = Settings.model_validate(doc)
        lb = settings.lb.model_copy(
            update={"host": ",".join(network.balancer_addresses), "port": BALANCER_PORT}
        )
        settings = settings.model_copy(update={"lb": lb})
        _maxconn, copies = lb_processes(settings)
        namespace = network.namespaces[BALANCER]
        for index in range(copies):
            runtime = (self.state_dir / "hosts" / BALANCER / f"haproxy-{index}").resolve()
            runtime.mkdir(parents=True, exist_ok=True)
            config = runtime / "haproxy.cfg"
            config.write_text(render("haproxy", settings, Placement(runtime_dir=str(runtime))))
            argv = [binary("haproxy"), "-W", "-db", "-f", str(config)]
            name = f"{BALANCER}/haproxy-{index}"
            log = runtime / "haproxy.log"
            process = ManagedProcess(
                name, as_user(namespace, "root", argv), log, env=dict(BASE_ENVIRONMENT)
            ).start()
            self.state.add(
                ServiceRecord(
                    name=name,
                    kind=BALANCER,
                    pid=process.pid,
                    started=process.started,
                    host=network.balancer_addresses[0],
                    port=BALANCER_PORT,
                    log=str(log),
                    stop_signal=int(signal.SIGUSR1),  # HAProxy's soft stop.
                    stop_timeout=15.0,
                    extra={"namespace": namespace, "config": str(config)},
                )
            )
            process.detach()
        urls = [f"{u}/health" for u in network.urls]
        deadline = time.monotonic() + READY_SECONDS
        while not all(http_ok(u) for u in urls):
            if time.monotonic() > deadline:
                raise StackError(f"the balancer did not forward /health within {READY_SECONDS} s")
            time.sleep(0.2)


def _wait_for(ready: Callable[[], bool], record: ServiceRecord, what: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while not ready():
        if not record.running():
            tail = "\n".join(Path(record.log).read_text(errors="replace").splitlines()[-30:])
            raise StackError(f"{record.name} exited before it was ready:\n{tail}")
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not within {READY_SECONDS} s")
        time.sleep(0.2)


def _create_network(state_dir: Path, spec: FleetSpec) -> Network:
    tag = secrets.token_hex(3)
    subnet = ipaddress.ip_network(spec.subnet)
    network = Network(tag=tag, subnet=spec.subnet, bridge=f"c5b{tag}")
    network.save(state_dir)  # Before anything exists: `down` finds whatever gets created.
    netns.bridge_up(network.bridge, f"{subnet.network_address + 1}/{subnet.prefixlen}")
    balancer = ipaddress.ip_network(spec.balancer_range)
    network.balancer_addresses = [
        str(balancer.network_address + 1 + i) for i in range(BALANCER_ADDRESSES)
    ]
    members = [(h.name, [h.address]) for h in hosts(spec)]
    members.append((BALANCER, network.balancer_addresses))
    for index, (name, addresses) in enumerate(members):
        namespace, link = f"c50k-{tag}-{name}", f"c5{tag}{index:02d}"
        network.namespaces[name] = namespace
        network.links[name] = link
        network.save(state_dir)
        netns.plug(namespace, network.bridge, link, [f"{a}/{subnet.prefixlen}" for a in addresses])
    return network


def up(
    state_dir: Path, spec: FleetSpec, base: SettingsDoc | None = None
) -> tuple[Network, StackState]:
    """Create the hosts, start every unit of each (databases, cache, apps), the balancer, and
    seed the demo items. On any failure, everything created so far is removed."""
    if os.geteuid() != 0:
        raise StackError("the rehearsal creates network namespaces: run it as root")
    if Network.load(state_dir) is not None:
        raise StackError(f"a rehearsal exists in {state_dir}; run `c50k fleet rehearse down` first")
    state_dir.mkdir(parents=True, exist_ok=True)
    for directory in [state_dir.resolve(), *state_dir.resolve().parents]:
        if directory.stat().st_mode & 0o001 == 0:
            raise StackError(
                f"the hosts' users cannot enter {directory}: choose another --state-dir"
            )
    spec = rehearsal_spec(spec, _free_network())
    # Hosts are new each time (a new subnet): no data of an earlier rehearsal is reused.
    shutil.rmtree(state_dir / "hosts", ignore_errors=True)
    doc = app_settings(spec, base)
    rehearsal = Rehearsal(state_dir)
    rehearsal.python = install_c50k(state_dir)
    try:
        network = _create_network(state_dir, spec)
        for host in hosts(spec):
            layout = rehearsal.layout(host.name)
            setup = host_setup(host, spec, doc, {}, layout)
            _install(setup, layout)
            for name, text in setup.units.items():
                record = rehearsal.start_unit(
                    host, network.namespaces[host.name], layout, name, text
                )
                rehearsal.wait_ready(host, spec, record)
        rehearsal.start_balancer(network, doc)
        (state_dir / "fleet.json").write_text(spec.model_dump_json(indent=2) + "\n")
        seed(rehearsal, network, spec)
    except BaseException:
        down(state_dir)
        raise
    return network, rehearsal.state


def seed(rehearsal: Rehearsal, network: Network, spec: FleetSpec, count: int = 1001) -> None:
    """The demo items, written from the first app host as its unit's user would."""
    app = next(h for h in hosts(spec) if h.role == "app")
    layout = rehearsal.layout(app.name)
    unit = parse_unit(Path(layout.path("/etc/systemd/system/c50k.service")).read_text())
    argv = [layout.python, "-m", "c50k", "seed", "--count", str(count), "--if-empty"]
    rehearsal._run(network.namespaces[app.name], unit, argv, Path(layout.path("/var/log/seed.log")))


def down(state_dir: Path) -> list[str]:
    """Stop every recorded process, then every process left in the rehearsal's namespaces (a
    gunicorn worker whose master was killed with -9), then remove the namespaces and the
    bridge. Returns what was removed."""
    removed = StackState.load(state_dir).stop_all()
    network = Network.load(state_dir)
    if network is None:
        return removed
    for name, namespace in network.namespaces.items():
        if netns.exists(namespace):
            for pid in namespace_pids(namespace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _wait_empty(namespace)
        netns.unplug(namespace, network.links[name])
        removed.append(namespace)
    netns.bridge_down(network.bridge)
    removed.append(network.bridge)
    (state_dir / NETWORK_FILE).unlink()
    return removed


def namespace_pids(namespace: str) -> list[int]:
    result = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True,
                            timeout=10, check=False)  # fmt: skip
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def _wait_empty(namespace: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while namespace_pids(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)


def leftovers(network: Network) -> list[str]:
    """What of a rehearsal still exists: namespaces, links, processes (empty after down)."""
    found = [n for n in network.namespaces.values() if netns.exists(n)]
    found += [f"{link}h" for link in network.links.values() if netns.link_exists(f"{link}h")]
    if netns.link_exists(network.bridge):
        found.append(network.bridge)
    return found
