"""Label and field selectors, parsed as Kubernetes parses them (`labels.Parse`, `fields.ParseSelector`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from isthmus.local.apiserver.errors import StatusError, bad_request
from isthmus.local.apiserver.validation import LABEL_VALUE_MSG, QUALIFIED_NAME_MSG

JsonObject = dict[str, Any]

_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_TOKEN = re.compile(r"\s*(!=|==|=|!|,|\(|\)|<|>|[^\s!=,()<>]+)")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if not present or value is None:
            return False
        try:
            number = int(value)
        except ValueError:
            return False
        bound = int(self.values[0])
        return number > bound if self.op == "gt" else number < bound


def _invalid(selector: str, why: str) -> StatusError:
    return bad_request(f"unable to parse requirement: {why}")


def _check_key(selector: str, key: str) -> None:
    if not _LABEL_KEY.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise _invalid(selector, f'<nil>: Invalid value: "{key}": {QUALIFIED_NAME_MSG}')


def _check_value(selector: str, key: str, value: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise _invalid(selector, f'values[0][{key}]: Invalid value: "{value}": {LABEL_VALUE_MSG}')


def parse_label_selector(selector: str) -> tuple[Requirement, ...]:
    """Parse `a=b,c!=d,e in (x,y),!f,g` into requirements (ANDed). Raises 400 on a malformed selector."""
    tokens: list[str] = [str(t) for t in _TOKEN.findall(selector)]
    if "".join(tokens).replace(" ", "") != re.sub(r"\s+", "", selector):
        raise _invalid(selector, "unexpected characters")
    reqs: list[Requirement] = []
    i = 0

    def take(expected: str) -> str:
        nonlocal i
        if i >= len(tokens):
            raise _invalid(selector, f"found '', expected: {expected}")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        token = take("identifier")
        if token == "!":
            key = take("identifier")
            _check_key(selector, key)
            reqs.append(Requirement(key, "!"))
        else:
            key = token
            _check_key(selector, key)
            op = tokens[i] if i < len(tokens) else ","
            if op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                i += 1
                value = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                if value:
                    i += 1
                _check_value(selector, key, value)
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
            elif op in ("in", "notin"):
                i += 1
                if take("'('") != "(":
                    raise _invalid(selector, f"found '{tokens[i - 1]}', expected: '('")
                values: list[str] = []
                expect_value = True
                while True:
                    item = take("',' or ')'")
                    if item == ")":
                        break
                    if item == ",":
                        expect_value = True
                        continue
                    if not expect_value:
                        raise _invalid(selector, f"found '{item}', expected: ',' or ')'")
                    _check_value(selector, key, item)
                    values.append(item)
                    expect_value = False
                reqs.append(Requirement(key, op, tuple(values)))
            elif op in ("<", ">"):
                i += 1
                value = take("integer")
                if not value.lstrip("-").isdigit():
                    raise _invalid(
                        selector, f"for 'Gt', 'Lt' operators, the value must be an integer: {value}"
                    )
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (value,)))
            else:
                raise _invalid(selector, f"found '{op}', expected: '=', '!=', '==', 'in', notin'")
        if i < len(tokens):
            if tokens[i] != ",":
                raise _invalid(selector, f"found '{tokens[i]}', expected: ',' or 'end of string'")
            i += 1
            if i == len(tokens):
                raise _invalid(selector, "found '', expected: identifier after ','")
    return tuple(reqs)


def label_matcher(selector: str) -> Callable[[JsonObject], bool] | None:
    """A predicate over objects for a label selector string; None when the selector selects everything."""
    if not selector.strip():
        return None
    reqs = parse_label_selector(selector)

    def matches(obj: JsonObject) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.matches(labels) for r in reqs)

    return matches


def selector_from_label_selector(spec: Mapping[str, Any] | None) -> Callable[[Mapping[str, str]], bool]:
    """A predicate over label maps for a `metav1.LabelSelector` (matchLabels + matchExpressions).

    A null selector matches nothing; an empty one matches everything.
    """
    if spec is None:
        return lambda labels: False
    reqs = [Requirement(k, "=", (v,)) for k, v in (spec.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in spec.get("matchExpressions") or []:
        reqs.append(Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ())))
    return lambda labels: all(r.matches(labels) for r in reqs)


def label_selector_string(spec: Mapping[str, Any] | None) -> str:
    """`metav1.LabelSelectorAsSelector(spec).String()`: requirements sorted by key, `k=v`, `k in (a,b)`..."""
    requirements: list[tuple[str, str]] = []
    for key, value in ((spec or {}).get("matchLabels") or {}).items():
        requirements.append((key, f"{key}={value}"))
    words = {"In": "in", "NotIn": "notin"}
    for expr in (spec or {}).get("matchExpressions") or []:
        key, op = str(expr.get("key", "")), expr.get("operator")
        if op in words:
            values = ",".join(sorted(str(v) for v in expr.get("values") or ()))
            requirements.append((key, f"{key} {words[op]} ({values})"))
        elif op == "Exists":
            requirements.append((key, key))
        elif op == "DoesNotExist":
            requirements.append((key, f"!{key}"))
    return ",".join(text for _, text in sorted(requirements, key=lambda r: r[0]))


# Field selectors each kind supports beyond metadata.name and metadata.namespace (kube-apiserver's lists).
FIELD_LABELS: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        }
    ),
    ("", "secrets"): frozenset({"type"}),
    ("", "namespaces"): frozenset({"status.phase"}),
    ("", "nodes"): frozenset({"spec.unschedulable"}),
    ("", "events"): frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    ("", "replicationcontrollers"): frozenset({"status.replicas"}),
    ("apps", "replicasets"): frozenset({"status.replicas"}),
    ("batch", "jobs"): frozenset({"status.successful"}),
    ("certificates.k8s.io", "certificatesigningrequests"): frozenset({"spec.signerName"}),
}

_FIELD_TERM = re.compile(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$")


def _field_value(obj: JsonObject, path: str) -> str:
    if path == "source" and "source" in obj:
        return str((obj.get("source") or {}).get("component", ""))
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, list):  # status.podIPs
        return ",".join(str(p.get("ip", "")) if isinstance(p, Mapping) else str(p) for p in node)
    return "" if node is None else str(node)


def field_matcher(
    group: str, plural: str, selector: str, custom: bool = False
) -> Callable[[JsonObject], bool] | None:
    """A predicate for a field selector (`a=b,c!=d`); None when it selects everything. 400 on unknown fields."""
    if not selector.strip():
        return None
    allowed = FIELD_LABELS.get((group, plural), frozenset()) | {"metadata.name", "metadata.namespace"}
    terms: list[tuple[str, bool, str]] = []
    for term in selector.split(","):
        m = _FIELD_TERM.match(term.strip())
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        path, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if path not in allowed:
            if (group, plural) in FIELD_LABELS or custom:
                raise bad_request(f"field label not supported: {path}")
            raise bad_request(
                f'"{path}" is not a known field selector: only "metadata.name", "metadata.namespace"'
            )
        terms.append((path, op != "!=", value))

    def matches(obj: JsonObject) -> bool:
        return all((_field_value(obj, path) == value) == equal for path, equal, value in terms)

    return matches


def all_of(*predicates: Callable[[JsonObject], bool] | None) -> Callable[[JsonObject], bool]:
    active = [p for p in predicates if p is not None]
    if not active:
        return lambda obj: True
    if len(active) == 1:
        return active[0]
    return lambda obj: all(p(obj) for p in active)
