"""The protobuf wire encoding of discovery responses, from resources that are already serialized.

Building a `DiscoveryResponse` message copies every resource into it; with a thousand streams receiving the
same resources, that copy is the cost of a push. The response messages are plain (strings, and repeated
length-delimited entries), so they are concatenated here from encodings made once per resource; a test checks
each against the protobuf library's own parse.
"""

from __future__ import annotations

# Field numbers, from envoy/service/discovery/v3/discovery.proto.
_SOTW_VERSION_INFO, _SOTW_RESOURCES, _SOTW_TYPE_URL, _SOTW_NONCE = 1, 2, 4, 5
_DELTA_SYSTEM_VERSION, _DELTA_RESOURCES, _DELTA_TYPE_URL, _DELTA_NONCE, _DELTA_REMOVED = 1, 2, 4, 5, 6
_RESOURCE_VERSION, _RESOURCE_ANY, _RESOURCE_NAME = 1, 2, 3
_ANY_TYPE_URL, _ANY_VALUE = 1, 2


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes and messages."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _text(number: int, value: str) -> bytes:
    return field(number, value.encode()) if value else b""


def _any(type_url: str, body: bytes) -> bytes:
    return field(_ANY_TYPE_URL, type_url.encode()) + field(_ANY_VALUE, body)


def sotw_entry(type_url: str, body: bytes) -> bytes:
    return field(_SOTW_RESOURCES, _any(type_url, body))


def delta_entry(type_url: str, name: str, version: str, body: bytes) -> bytes:
    resource = (
        field(_RESOURCE_VERSION, version.encode())
        + field(_RESOURCE_ANY, _any(type_url, body))
        + field(_RESOURCE_NAME, name.encode())
    )
    return field(_DELTA_RESOURCES, resource)


def sotw_response(version_info: str, type_url: str, nonce: str, entries: list[bytes]) -> bytes:
    """A serialized DiscoveryResponse."""
    return b"".join(
        [
            _text(_SOTW_VERSION_INFO, version_info),
            *entries,
            _text(_SOTW_TYPE_URL, type_url),
            _text(_SOTW_NONCE, nonce),
        ]
    )


def delta_response(
    system_version: str, type_url: str, nonce: str, entries: list[bytes], removed: list[str]
) -> bytes:
    """A serialized DeltaDiscoveryResponse."""
    return b"".join(
        [
            _text(_DELTA_SYSTEM_VERSION, system_version),
            *entries,
            _text(_DELTA_TYPE_URL, type_url),
            _text(_DELTA_NONCE, nonce),
            *(field(_DELTA_REMOVED, name.encode()) for name in removed),
        ]
    )
