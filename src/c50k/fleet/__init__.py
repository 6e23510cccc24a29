"""A fleet of hosts on Linode: its spec, its plan, its cloud-init and its rehearsal on
network-namespace hosts."""
