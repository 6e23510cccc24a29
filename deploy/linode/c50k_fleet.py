"""The c50k fleet as Pulumi resources: a VPC and its private subnet, the hosts of each role
with their cloud-init user-data, a NodeBalancer over the app hosts' private addresses, and a
Cloud Firewall per tier. Every value comes from c50k's fleet spec and settings model
(c50k.fleet): the program only maps their answers onto Linode's resources."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_linode as linode
import tomli_w

from c50k.fleet.cloudinit import host_setup, user_data
from c50k.fleet.plan import EDGE_RULES, Host, Rule, app_settings, firewall_rules, hosts, of_role
from c50k.fleet.spec import FleetSpec

# The NodeBalancer's ports: plain HTTP, and HTTPS when the stack has a certificate.
HTTP_PORT = 80
HTTPS_PORT = 443


@dataclass
class Fleet:
    spec: FleetSpec
    settings: dict[str, dict[str, Any]]
    vpc: linode.Vpc
    subnet: linode.VpcSubnet
    instances: dict[str, linode.Instance] = field(default_factory=dict)
    firewalls: dict[str, linode.Firewall] = field(default_factory=dict)
    balancer: linode.NodeBalancer | None = None
    configs: dict[int, linode.NodeBalancerConfig] = field(default_factory=dict)
    nodes: list[linode.NodeBalancerNode] = field(default_factory=list)


def _id(resource: pulumi.CustomResource) -> pulumi.Output[int]:
    return resource.id.apply(int)


def _inbound(rule: Rule) -> linode.FirewallInboundArgs:
    return linode.FirewallInboundArgs(
        label=rule.label,
        action="ACCEPT",
        protocol="TCP",
        ports=rule.ports,
        ipv4s=rule.ipv4 or None,
        ipv6s=rule.ipv6 or None,
    )


def _user_data(
    host: Host, spec: FleetSpec, settings: dict[str, dict[str, Any]], secrets: Any
) -> pulumi.Output[str]:
    def encode(values: dict[str, str] | None) -> str:
        text = user_data(host_setup(host, spec, settings, values or {}), spec, "the stack config")
        return base64.b64encode(text.encode()).decode()

    return pulumi.Output.from_input(secrets).apply(encode)


def _instance(
    host: Host, spec: FleetSpec, fleet: Fleet, user_data: pulumi.Output[str], root_pass: Any
) -> linode.Instance:
    group = {"app": spec.app, "redis": spec.redis, "haproxy": spec.haproxy}.get(host.group)
    return linode.Instance(
        host.name,
        label=f"{spec.name}-{host.name}",
        region=spec.region,
        type=spec.postgres.type if group is None else group.type,
        image=spec.image,
        authorized_keys=spec.authorized_keys or None,
        root_pass=root_pass,
        tags=[spec.name, host.group],
        interfaces=[
            linode.InstanceInterfaceArgs(purpose="public"),
            # The private subnet, at the address the plan gave this host: the settings file
            # names it before the host exists.
            linode.InstanceInterfaceArgs(
                purpose="vpc",
                subnet_id=_id(fleet.subnet),
                ipv4=linode.InstanceInterfaceIpv4Args(vpc=host.address),
            ),
        ],
        metadatas=[linode.InstanceMetadataArgs(user_data=user_data)],
    )


def _balancer(fleet: Fleet, tls: tuple[str, Any] | None) -> None:
    spec = fleet.spec
    edge = linode.Firewall(
        "edge",
        label=f"{spec.name}-edge",
        inbound_policy="DROP",
        outbound_policy="ACCEPT",
        inbounds=[_inbound(rule) for rule in EDGE_RULES],
    )
    fleet.firewalls["edge"] = edge
    balancer = linode.NodeBalancer(
        "balancer",
        label=f"{spec.name}-balancer",
        region=spec.region,
        firewall_id=_id(edge),
        # The NodeBalancer reaches the app hosts inside the VPC, from this range.
        vpcs=[
            linode.NodeBalancerVpcArgs(subnet_id=_id(fleet.subnet), ipv4_range=spec.balancer_range)
        ],
        tags=[spec.name],
    )
    fleet.balancer = balancer
    check = spec.check
    ports: dict[int, dict[str, Any]] = {HTTP_PORT: {"protocol": "http"}}
    if tls is not None:
        ports[HTTPS_PORT] = {"protocol": "https", "ssl_cert": tls[0], "ssl_key": tls[1]}
    for port, protocol in ports.items():
        config = linode.NodeBalancerConfig(
            f"balancer-{port}",
            nodebalancer_id=_id(balancer),
            port=port,
            algorithm="leastconn",
            stickiness="none",
            # Active: GET /ready (503 while an instance drains); passive: a failed connection
            # or answer takes the node out at once.
            check="http",
            check_path=check.path,
            check_interval=check.interval_seconds,
            check_timeout=check.timeout_seconds,
            check_attempts=check.attempts,
            check_passive=True,
            **protocol,
        )
        fleet.configs[port] = config
        for host in of_role(spec, "app"):
            fleet.nodes.append(
                linode.NodeBalancerNode(
                    f"balancer-{port}-{host.name}",
                    nodebalancer_id=_id(balancer),
                    config_id=_id(config),
                    label=f"{spec.name}-{host.name}",
                    address=f"{host.address}:{spec.app_port}",
                    subnet_id=_id(fleet.subnet),
                    mode="accept",
                    weight=100,
                )
            )


def build(config: pulumi.Config | None = None) -> Fleet:
    """Every resource of the fleet from the stack config `c50k:*`; exports the public
    address, each host's private address and the app hosts' settings file."""
    config = config or pulumi.Config("c50k")
    spec = FleetSpec.model_validate(config.get_object("fleet") or {})
    settings = app_settings(spec, config.get_object("settings") or {})
    secrets: Any = config.get_secret_object("secrets") or {}
    certificate, key = config.get("tlsCertificate"), config.get_secret("tlsKey")
    if (certificate is None) != (key is None):
        raise ValueError("c50k:tlsCertificate and c50k:tlsKey go together")
    vpc = linode.Vpc("vpc", label=f"{spec.name}-vpc", region=spec.region)
    subnet = linode.VpcSubnet(
        "subnet", vpc_id=_id(vpc), label=f"{spec.name}-private", ipv4=spec.subnet
    )
    fleet = Fleet(spec, settings, vpc, subnet)
    root_pass = config.get_secret("rootPassword")
    for host in hosts(spec):
        data = _user_data(host, spec, settings, secrets)
        fleet.instances[host.name] = _instance(host, spec, fleet, data, root_pass)
    for tier, rules in firewall_rules(spec).items():
        members = [fleet.instances[h.name] for h in hosts(spec) if h.group == tier]
        fleet.firewalls[tier] = linode.Firewall(
            tier,
            label=f"{spec.name}-{tier}",
            # Everything not accepted below is dropped; the hosts may call out (packages,
            # the upstream API).
            inbound_policy="DROP",
            outbound_policy="ACCEPT",
            inbounds=[_inbound(rule) for rule in rules],
            linodes=[_id(instance) for instance in members],
        )
    _balancer(fleet, None if certificate is None or key is None else (certificate, key))
    assert fleet.balancer is not None  # noqa: S101 -- set just above.
    pulumi.export("public_address", fleet.balancer.ipv4)
    pulumi.export("public_hostname", fleet.balancer.hostname)
    pulumi.export("private_addresses", {h.name: h.address for h in hosts(spec)})
    pulumi.export("app_settings", tomli_w.dumps(settings))
    return fleet
