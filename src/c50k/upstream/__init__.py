"""The upstream HTTP API: the pooled client the service uses, and a mock to test against."""

from c50k.upstream.client import UpstreamClient

__all__ = ["UpstreamClient"]
