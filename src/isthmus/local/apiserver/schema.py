"""Object schemas: Kubernetes' own (from the kubernetes-validate package) and those CRDs bring.

A `Schema` is a read-only view of one node of an OpenAPI / JSON schema with `$ref`s resolved on access. It is
what validation, strategic merge patch, server-side apply and the OpenAPI endpoint walk. Instances are
immutable and safe to share; the catalog builds each one at most once.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

KUBERNETES_SCHEMA_VERSION = "v1.32.0"

_SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})


class Schema:
    """One schema node. `raw` is the node itself, merged with the target of its `$ref` (siblings win)."""

    __slots__ = ("__dict__", "_defs", "definition", "raw")

    def __init__(self, raw: Mapping[str, Any], defs: Mapping[str, Any], definition: str = "") -> None:
        ref = raw.get("$ref")
        if isinstance(ref, str):
            definition = ref.rsplit("/", 1)[-1]
            merged = dict(defs[definition])
            merged.update((k, v) for k, v in raw.items() if k != "$ref")
            raw = merged
        self.raw: Mapping[str, Any] = raw
        self.definition = (
            definition  # the named definition this node is, e.g. io.k8s.api.apps.v1.DeploymentSpec
        )
        self._defs = defs

    @property
    def go_type(self) -> str:
        """The Go type Kubernetes declares for this node, as its decoding errors name it."""
        if self.definition:
            return self.definition.rsplit(".", 1)[-1]
        fmt = self.raw.get("format")
        if "integer" in self.types:
            return str(fmt) if fmt in ("int32", "int64") else "int"
        if "number" in self.types:
            return "float64"
        if "boolean" in self.types:
            return "bool"
        if "string" in self.types:
            return "string"
        if "array" in self.types:
            return "[]" + (self.items.go_type if self.items else "interface {}")
        if self.additional_properties is not None:
            return "map[string]" + self.additional_properties.go_type
        return "map[string]interface {}"

    def _child(self, raw: Any) -> Schema | None:
        return Schema(raw, self._defs) if isinstance(raw, Mapping) else None

    @cached_property
    def types(self) -> frozenset[str]:
        """The JSON types this node admits ("null" left out); empty means anything."""
        if self.raw.get("x-kubernetes-int-or-string"):
            return frozenset({"integer", "string"})
        declared = self.raw.get("type")
        if isinstance(declared, str):
            return frozenset({declared}) - {"null"}
        if isinstance(declared, list):
            return frozenset(t for t in declared if t != "null")
        one_of = self.raw.get("oneOf") or self.raw.get("anyOf")
        if isinstance(one_of, list):
            found: set[str] = set()
            for option in one_of:
                child = self._child(option)
                if child is None or not child.types:
                    return frozenset()
                found |= child.types
            return frozenset(found)
        if "properties" in self.raw:
            return frozenset({"object"})
        return frozenset()

    @cached_property
    def properties(self) -> Mapping[str, Schema]:
        props = self.raw.get("properties")
        if not isinstance(props, Mapping):
            return {}
        return {name: Schema(node, self._defs) for name, node in props.items()}

    @cached_property
    def items(self) -> Schema | None:
        return self._child(self.raw.get("items"))

    @cached_property
    def additional_properties(self) -> Schema | None:
        """The schema of map values, when this object is a map."""
        return self._child(self.raw.get("additionalProperties"))

    @property
    def is_scalar(self) -> bool:
        return bool(self.types) and self.types <= _SCALAR_TYPES

    @property
    def preserves_unknown_fields(self) -> bool:
        """True where fields not in `properties` are kept (free-form objects)."""
        if self.raw.get("x-kubernetes-preserve-unknown-fields"):
            return True
        if self.raw.get("additionalProperties") is True:
            return True
        # An object with neither properties nor a value schema is free-form (RawExtension, FieldsV1, JSON).
        return (
            "properties" not in self.raw
            and "additionalProperties" not in self.raw
            and (not self.types or self.types == {"object"})
        )

    @property
    def embedded_resource(self) -> bool:
        return bool(self.raw.get("x-kubernetes-embedded-resource"))

    @property
    def patch_merge_key(self) -> str | None:
        key = self.raw.get("x-kubernetes-patch-merge-key")
        return key if isinstance(key, str) else None

    @property
    def patch_strategies(self) -> frozenset[str]:
        """Strategic-merge strategies: a subset of {"merge", "replace", "retainKeys"}."""
        strategy = self.raw.get("x-kubernetes-patch-strategy")
        return frozenset(strategy.split(",")) if isinstance(strategy, str) else frozenset()

    @property
    def list_type(self) -> str | None:
        """Server-side-apply list semantics: "atomic", "set", "map" or None (atomic)."""
        value = self.raw.get("x-kubernetes-list-type")
        return value if isinstance(value, str) else None

    @property
    def list_map_keys(self) -> tuple[str, ...]:
        keys = self.raw.get("x-kubernetes-list-map-keys")
        return tuple(keys) if isinstance(keys, list) else ()

    @property
    def map_type(self) -> str | None:
        """Server-side-apply map/struct semantics: "atomic", "granular" or None (granular)."""
        value = self.raw.get("x-kubernetes-map-type")
        return value if isinstance(value, str) else None

    @property
    def required(self) -> tuple[str, ...]:
        value = self.raw.get("required")
        return tuple(value) if isinstance(value, list) else ()

    @property
    def enum(self) -> tuple[Any, ...]:
        value = self.raw.get("enum")
        return tuple(v for v in value if v is not None) if isinstance(value, list) else ()

    @property
    def description(self) -> str:
        value = self.raw.get("description")
        return value if isinstance(value, str) else ""

    def field(self, name: str) -> Schema | None:
        """The schema of field or map key `name` of this object, None when unknown."""
        prop = self.properties.get(name)
        if prop is not None:
            return prop
        return self.additional_properties

    def walk(self, path: Iterator[str]) -> Schema | None:
        node: Schema | None = self
        for name in path:
            if node is None:
                return None
            node = node.items if name == "[]" else node.field(name)
        return node


class SchemaCatalog:
    """Kubernetes' published schemas, indexed by group, version and kind. Loaded once per process."""

    def __init__(self, definitions: Mapping[str, Any]) -> None:
        self.definitions = definitions
        self._by_gvk: dict[tuple[str, str, str], str] = {}
        for name, node in definitions.items():
            for gvk in node.get("x-kubernetes-group-version-kind", ()):
                self._by_gvk[(gvk["group"], gvk["version"], gvk["kind"])] = name
        self._cache: dict[str, Schema] = {}

    @classmethod
    def load(cls, strict: bool = True) -> SchemaCatalog:
        spec = importlib.util.find_spec("kubernetes_validate")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("the kubernetes-validate package is not installed (run `make install`)")
        base = Path(next(iter(spec.submodule_search_locations)))
        suffix = "-local-strict" if strict else "-local"
        path = base / "kubernetes-json-schema" / f"{KUBERNETES_SCHEMA_VERSION}{suffix}" / "_definitions.json"
        return cls(orjson.loads(path.read_bytes())["$defs"])

    def definition_name(self, group: str, version: str, kind: str) -> str | None:
        return self._by_gvk.get((group, version, kind))

    def for_kind(self, group: str, version: str, kind: str) -> Schema | None:
        name = self._by_gvk.get((group, version, kind))
        return self.named(name) if name else None

    def named(self, name: str) -> Schema:
        schema = self._cache.get(name)
        if schema is None:
            schema = self._cache[name] = Schema(self.definitions[name], self.definitions, name)
        return schema


def crd_schema(open_api_v3_schema: Mapping[str, Any]) -> Schema:
    """A Schema over a CRD version's `openAPIV3Schema` (self-contained: CRDs have no $refs)."""
    return Schema(open_api_v3_schema, {})
