"""Timestamps as Kubernetes writes them (RFC 3339, UTC, second precision) and parses them."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(when: datetime | None = None) -> str:
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp(when: datetime | None = None) -> str:
    """MicroTime, as Events and Leases carry."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (with or without fractional seconds)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
