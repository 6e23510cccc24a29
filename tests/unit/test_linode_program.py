"""The Pulumi program of deploy/linode under Pulumi's mocks (no CLI, no provider plugin):
every resource, and how each is wired to the others."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pytest
import yaml

from c50k.fleet.plan import app_settings, hosts
from c50k.fleet.spec import FleetSpec

# How the Pulumi SDK marks a secret value on the wire.
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 -- a marker, not a password.
FLEET = {
    "app": {"count": 4, "type": "g6-dedicated-8"},
    "postgres": {"shards": 2, "replicas": 1, "type": "g6-dedicated-16"},
    "admin_cidrs": ["203.0.113.0/24"],
    "monitoring_cidrs": ["198.51.100.7/32"],
}


@dataclass
class Recorder(pulumi.runtime.Mocks):
    resources: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    # Pulumi's mock monitor makes an event loop in each executor thread it answers from.
    thread_loops: set[asyncio.AbstractEventLoop] = field(default_factory=set)

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[Any, Any]]:
        self.thread_loops.add(asyncio.get_event_loop())
        self.resources[args.name] = (args.typ, dict(args.inputs))
        outputs = dict(args.inputs)
        if args.typ.endswith("NodeBalancer"):
            outputs |= {"ipv4": "203.0.113.80", "hostname": "nb.example"}
        # Numeric ids, as Linode's: the program passes them on as integers.
        return str(len(self.resources)), outputs

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None

    def of_type(self, suffix: str) -> dict[str, dict[str, Any]]:
        return {n: i for n, (t, i) in self.resources.items() if t.endswith(suffix)}

    def id_of(self, name: str) -> float:
        return float(list(self.resources).index(name) + 1)


def unsecret(value: Any) -> Any:
    return value["value"] if isinstance(value, dict) and SECRET_SIG in value else value


def run(config: dict[str, Any], secret: tuple[str, ...] = ()) -> Recorder:
    from c50k_fleet import build  # noqa: PLC0415 -- after the mocks are in place.

    recorder = Recorder()
    # Pulumi's runtime runs on the thread's current loop; earlier async tests leave none.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_mocks(recorder, project="c50k-fleet", stack="test", preview=False)
    pulumi.runtime.set_all_config(
        {f"c50k:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()},
        [f"c50k:{k}" for k in secret],
    )

    @pulumi.runtime.test  # type: ignore[untyped-decorator,unused-ignore]  # Waits for every registration.
    def program() -> pulumi.Output[list[Any]]:
        fleet = build()
        return pulumi.Output.all(
            *(n.id for n in fleet.nodes), *(f.id for f in fleet.firewalls.values())
        )

    try:
        program()
    finally:
        # Closed here, every loop Pulumi's runtime used: none is left to the garbage collector.
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()
        for thread_loop in recorder.thread_loops - {loop}:
            thread_loop.close()
    return recorder


@pytest.fixture(scope="module")
def fleet() -> Recorder:
    return run(
        {
            "fleet": FLEET,
            "settings": {"server": {"workers": 8}},
            "secrets": {"C50K_REDIS_URL": "redis://:pw@10.0.0.180:6379/0"},
            "tlsCertificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "tlsKey": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
        },
        secret=("secrets", "tlsKey"),
    )


def test_instance_counts_types_and_private_addresses_come_from_config(fleet: Recorder) -> None:
    spec = FleetSpec.model_validate(FLEET)
    instances = fleet.of_type(":Instance")
    assert sorted(instances) == sorted(h.name for h in hosts(spec))
    assert len([n for n in instances if n.startswith("app-")]) == 4
    assert len([n for n in instances if n.startswith("pg-")]) == 4  # 2 shards x (1 + 1)
    subnet = fleet.id_of("subnet")
    for host in hosts(spec):
        inputs = instances[host.name]
        assert inputs["type"] == {"app": "g6-dedicated-8", "postgres": "g6-dedicated-16"}.get(
            host.group, "g6-standard-2"
        )
        assert inputs["interfaces"] == [
            {"purpose": "public"},
            {"purpose": "vpc", "subnetId": subnet, "ipv4": {"vpc": host.address}},
        ]


def test_vpc_and_subnet(fleet: Recorder) -> None:
    assert fleet.of_type(":Vpc")["vpc"]["region"] == "us-ord"
    assert fleet.of_type(":VpcSubnet")["subnet"] == {
        "vpcId": fleet.id_of("vpc"), "label": "c50k-private", "ipv4": "10.0.0.0/24",
    }  # fmt: skip


def test_each_host_gets_its_roles_user_data_with_the_secrets(fleet: Recorder) -> None:
    spec = FleetSpec.model_validate(FLEET)
    for host in hosts(spec):
        metadata = unsecret(fleet.of_type(":Instance")[host.name]["metadatas"])
        text = base64.b64decode(metadata[0]["userData"]).decode()
        assert text.startswith("#cloud-config\n")
        document = yaml.safe_load(text)
        assert f"(role {host.role})" in text.splitlines()[1]
        files = {f["path"]: f for f in document["write_files"]}
        if host.role == "app":
            assert files["/etc/c50k/secrets.env"]["permissions"] == "0600"
            assert (
                'C50K_REDIS_URL="redis://:pw@10.0.0.180:6379/0"'
                in files["/etc/c50k/secrets.env"]["content"]
            )
            settings = files["/etc/c50k/c50k.toml"]["content"]
            assert "workers = 8" in settings
            assert (
                f"C50K_SERVER_HOST={host.address}"
                in files["/etc/systemd/system/c50k.service"]["content"]
            )


def test_nodebalancer_checks_ready_on_the_app_hosts_private_addresses(fleet: Recorder) -> None:
    balancer = fleet.of_type(":NodeBalancer")["balancer"]
    assert balancer["vpcs"] == [{"subnetId": fleet.id_of("subnet"), "ipv4Range": "10.0.0.240/28"}]
    assert balancer["firewallId"] == fleet.id_of("edge")
    configs = fleet.of_type(":NodeBalancerConfig")
    assert sorted(c["port"] for c in configs.values()) == [80, 443]
    for config in configs.values():
        assert config["nodebalancerId"] == fleet.id_of("balancer")
        assert config["algorithm"] == "leastconn"
        assert (config["check"], config["checkPath"], config["checkPassive"]) == (
            "http",
            "/ready",
            True,
        )
        assert (config["checkInterval"], config["checkTimeout"], config["checkAttempts"]) == (
            3,
            2,
            2,
        )
    https = configs["balancer-443"]
    assert https["protocol"] == "https"
    assert unsecret(https["sslCert"]).startswith("-----BEGIN CERTIFICATE-----")
    assert unsecret(https["sslKey"]).startswith("-----BEGIN PRIVATE KEY-----")
    assert configs["balancer-80"]["protocol"] == "http"
    nodes = fleet.of_type(":NodeBalancerNode")
    apps = [h for h in hosts(FleetSpec.model_validate(FLEET)) if h.role == "app"]
    assert len(nodes) == 2 * len(apps)
    for port in (80, 443):
        ours = [n for name, n in nodes.items() if name.startswith(f"balancer-{port}-")]
        assert sorted(n["address"] for n in ours) == sorted(f"{h.address}:8000" for h in apps)
        for node in ours:
            assert node["configId"] == fleet.id_of(f"balancer-{port}")
            assert node["subnetId"] == fleet.id_of("subnet")  # Private: inside the VPC.
            assert node["address"].startswith("10.0.0.")


def rules(fleet: Recorder, name: str) -> dict[str, tuple[str, list[str]]]:
    firewall = fleet.of_type(":Firewall")[name]
    assert (firewall["inboundPolicy"], firewall["outboundPolicy"]) == ("DROP", "ACCEPT")
    return {
        r["label"]: (r["ports"], r.get("ipv4s", []) + r.get("ipv6s", []))
        for r in firewall["inbounds"]
        if r["action"] == "ACCEPT" and r["protocol"] == "TCP"
    }


def test_firewalls_admit_exactly_what_each_tier_needs(fleet: Recorder) -> None:
    spec = FleetSpec.model_validate(FLEET)
    apps = sorted(f"{h.address}/32" for h in hosts(spec) if h.role == "app")
    replicas = sorted(f"{h.address}/32" for h in hosts(spec) if h.role == "postgres-replica")
    ssh = ("22", ["203.0.113.0/24"])
    assert rules(fleet, "app") == {
        "app-from-balancer": ("8000", ["10.0.0.240/28"]),
        "app-from-subnet": ("8000", ["10.0.0.0/24"]),
        "metrics-from-monitoring": ("9101", ["198.51.100.7/32"]),
        "ssh-from-admin": ssh,
    }
    postgres = rules(fleet, "postgres")
    assert postgres.keys() == {
        "postgres-pgbouncer-from-apps",
        "replication-from-db-hosts",
        "ssh-from-admin",
    }
    assert postgres["postgres-pgbouncer-from-apps"][0] == "5432, 6432"
    assert sorted(postgres["postgres-pgbouncer-from-apps"][1]) == apps
    assert sorted(postgres["replication-from-db-hosts"][1]) == replicas
    assert rules(fleet, "redis") == {"redis-from-apps": ("6379", apps), "ssh-from-admin": ssh}
    assert rules(fleet, "edge") == {"http-from-anywhere": ("80, 443", ["0.0.0.0/0", "::/0"])}
    members = {
        name: sorted(f["linodes"])
        for name, f in fleet.of_type(":Firewall").items()
        if "linodes" in f
    }
    for tier, prefix in (("app", "app-"), ("postgres", "pg-"), ("redis", "redis-")):
        ids = sorted(fleet.id_of(n) for n in fleet.of_type(":Instance") if n.startswith(prefix))
        assert members[tier] == ids


def test_without_a_certificate_only_port_80_and_no_ssh_rule() -> None:
    recorder = run(
        {
            "fleet": {
                "app": {"count": 1, "type": "g6-standard-2"},
                "redis": {"count": 0, "type": "x"},
            }
        }
    )
    assert [c["port"] for c in recorder.of_type(":NodeBalancerConfig").values()] == [80]
    assert "ssh-from-admin" not in rules(recorder, "app")
    assert "redis" not in recorder.of_type(":Firewall")
    assert len(recorder.of_type(":NodeBalancerNode")) == 1


def test_settings_file_output_is_the_plans() -> None:
    spec = FleetSpec.model_validate(FLEET)
    document = app_settings(spec, {"server": {"workers": 8}})
    assert (
        document["lb"]["instances"] == "10.0.0.10:8000,10.0.0.11:8000,10.0.0.12:8000,10.0.0.13:8000"
    )
    assert document["postgres"]["shards"][1] == {
        "primary": "postgresql://postgres@10.0.0.102:5432/c50k",
        "replicas": ["postgresql://postgres@10.0.0.103:5432/c50k"],
    }
    assert document["server"]["forwarded_allow_ips"] == "10.0.0.240/28"
