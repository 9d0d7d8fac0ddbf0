"""Label and field selectors, with the syntax and matching rules of Kubernetes' `labels.Parse` and
`fields.ParseSelector` (what `kubectl get -l ...` and `--field-selector ...` send)."""

from __future__ import annotations

from typing import Any

import pytest

from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.selectors import (
    all_of,
    field_matcher,
    label_matcher,
    parse_label_selector,
    selector_from_label_selector,
)

JsonObject = dict[str, Any]


def labelled(labels: dict[str, str] | None) -> JsonObject:
    meta: JsonObject = {"name": "x", "namespace": "default"}
    if labels is not None:
        meta["labels"] = labels
    return {"metadata": meta}


def selects(selector: str, labels: dict[str, str] | None) -> bool:
    matcher = label_matcher(selector)
    assert matcher is not None
    return matcher(labelled(labels))


# -- label selector syntax and matching ----------------------------------------------------------------------

WEB = {"app": "web", "tier": "front"}
DB = {"app": "db"}
NO_APP = {"tier": "front"}
EMPTY_APP = {"app": ""}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        # equality: `=` and `==` are the same; the key must be there
        ("app=web", [True, False, False, False, False]),
        ("app==web", [True, False, False, False, False]),
        ("app = web", [True, False, False, False, False]),
        # inequality: also matches objects without the key
        ("app!=web", [False, True, True, True, True]),
        # set-based
        ("app in (web,db)", [True, True, False, False, False]),
        ("app in ( web , db )", [True, True, False, False, False]),
        ("app notin (web)", [False, True, True, True, True]),
        # existence
        ("app", [True, True, False, True, False]),
        ("!app", [False, False, True, False, True]),
        # an empty value is a value
        ("app=", [False, False, False, True, False]),
        # requirements are ANDed
        ("app=web,tier=front", [True, False, False, False, False]),
        ("app,!tier", [False, True, False, True, False]),
        ("tier=front,app notin (web)", [False, False, True, False, False]),
    ],
)
def test_label_selector_matching(selector: str, expected: list[bool]) -> None:
    """Kubernetes' label selector semantics (labels.Requirement.Matches): `!=` and `notin` match objects
    without the key, `in` and `=` need it, `key` and `!key` test existence, commas AND."""
    results = [selects(selector, labels) for labels in (WEB, DB, NO_APP, EMPTY_APP, None)]
    assert results == expected


def test_label_selector_matches_qualified_keys() -> None:
    assert selects("example.com/team=a", {"example.com/team": "a"})
    assert not selects("example.com/team=a", {"team": "a"})


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("replicas>2", {"replicas": "3"}, True),
        ("replicas>2", {"replicas": "2"}, False),
        ("replicas<2", {"replicas": "1"}, True),
        ("replicas<2", {"replicas": "x"}, False),  # not an integer: no match
        ("replicas>2", {}, False),
    ],
)
def test_greater_and_less_than_compare_integers(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    assert selects(selector, labels) is expected


@pytest.mark.parametrize("selector", ["", "   "])
def test_an_empty_label_selector_selects_everything(selector: str) -> None:
    assert label_matcher(selector) is None


def test_parsed_requirements_keep_the_order_and_values() -> None:
    reqs = parse_label_selector("a=b,c!=d,e in (x,y),f notin (z),g,!h")
    assert [(r.key, r.op, r.values) for r in reqs] == [
        ("a", "=", ("b",)),
        ("c", "!=", ("d",)),
        ("e", "in", ("x", "y")),
        ("f", "notin", ("z",)),
        ("g", "exists", ()),
        ("h", "!", ()),
    ]


@pytest.mark.parametrize(
    "selector",
    [
        "app web",  # two identifiers
        "app=web=x",  # a second operator
        "=web",  # no key
        "!app=web",  # `!key` takes no value
        "app in web",  # in needs a parenthesized list
        "app in (web",  # unterminated list
        "app in (web db)",  # values are comma separated: "found 'db', expected: ',' or ')'"
        "app,",  # a trailing comma: "found '', expected: identifier after ','"
        ",app",
        "app,,tier",
        "app>x",  # Gt needs an integer
        "k@y=v",  # invalid key
        "-app=web",  # key must start with an alphanumeric character
        "app=-web",  # invalid value
        "app=" + "v" * 64,  # value longer than 63 characters
        "a" * 64 + "=v",  # key name part longer than 63 characters
        "Example.com/app=web",  # the prefix is a lowercase DNS subdomain
    ],
)
def test_malformed_label_selectors_are_400(selector: str) -> None:
    """kube-apiserver answers 400 BadRequest for a selector `labels.Parse` refuses."""
    with pytest.raises(StatusError) as excinfo:
        label_matcher(selector)
    assert (excinfo.value.code, excinfo.value.reason) == (400, "BadRequest")


def test_an_invalid_label_key_is_reported_as_labels_parse_reports_it() -> None:
    """labels.Parse wraps the key's field error (its path is nil): `unable to parse requirement: <nil>:
    Invalid value: "k@y": name part must consist of ...`."""
    with pytest.raises(StatusError) as excinfo:
        label_matcher("k@y=v")
    assert excinfo.value.message == (
        'unable to parse requirement: <nil>: Invalid value: "k@y": name part must consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  "
        "or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )


# -- metav1.LabelSelector ------------------------------------------------------------------------------------


def test_a_null_label_selector_selects_nothing_and_an_empty_one_everything() -> None:
    """metav1.LabelSelectorAsSelector: nil is labels.Nothing(), {} is labels.Everything()."""
    assert not selector_from_label_selector(None)({"app": "web"})
    assert not selector_from_label_selector(None)({})
    assert selector_from_label_selector({})({"app": "web"})
    assert selector_from_label_selector({})({})


def test_label_selector_combines_match_labels_and_match_expressions() -> None:
    selector = selector_from_label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "team", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
            ],
        }
    )

    assert selector({"app": "web", "tier": "edge", "team": "x"})
    assert selector({"app": "web", "tier": "front", "team": "x", "zone": "a"})
    assert not selector({"app": "web", "tier": "front", "team": "x", "zone": "b"})
    assert not selector({"app": "web", "tier": "front", "team": "x", "canary": "1"})
    assert not selector({"app": "web", "tier": "front"})
    assert not selector({"app": "db", "tier": "front", "team": "x"})


# -- field selectors -----------------------------------------------------------------------------------------


def pod(name: str, namespace: str = "default", **fields: Any) -> JsonObject:
    return {"metadata": {"name": name, "namespace": namespace}, **fields}


def test_field_selector_on_name_and_namespace_works_for_every_resource() -> None:
    matcher = field_matcher("", "configmaps", "metadata.name=a,metadata.namespace==default")
    assert matcher is not None
    assert matcher(pod("a"))
    assert not matcher(pod("b"))
    assert not matcher(pod("a", "other"))


def test_field_selector_inequality() -> None:
    matcher = field_matcher("", "pods", "metadata.name!=a")
    assert matcher is not None
    assert not matcher(pod("a"))
    assert matcher(pod("b"))


def test_pod_field_selectors() -> None:
    """The pod field labels kubelets and kubectl use (`spec.nodeName`, `status.phase`)."""
    running = pod("a", spec={"nodeName": "n1"}, status={"phase": "Running"})
    pending = pod("b", spec={}, status={"phase": "Pending"})

    on_node = field_matcher("", "pods", "spec.nodeName=n1")
    unscheduled = field_matcher("", "pods", "spec.nodeName=")
    not_done = field_matcher("", "pods", "status.phase!=Succeeded,status.phase!=Failed")
    assert on_node is not None and unscheduled is not None and not_done is not None

    assert on_node(running) and not on_node(pending)
    assert unscheduled(pending) and not unscheduled(running)  # a missing field is ""
    assert not_done(running) and not_done(pending)


def test_boolean_fields_compare_as_go_prints_them() -> None:
    matcher = field_matcher("", "pods", "spec.hostNetwork=true")
    assert matcher is not None
    assert matcher(pod("a", spec={"hostNetwork": True}))
    assert not matcher(pod("b", spec={"hostNetwork": False}))


def test_secret_type_field_selector() -> None:
    matcher = field_matcher("", "secrets", "type=kubernetes.io/tls")
    assert matcher is not None
    assert matcher({"metadata": {"name": "a"}, "type": "kubernetes.io/tls"})
    assert not matcher({"metadata": {"name": "b"}, "type": "Opaque"})


def test_event_field_selectors() -> None:
    """`kubectl describe` finds an object's events with `involvedObject.*` field selectors."""
    matcher = field_matcher("", "events", "involvedObject.kind=Pod,involvedObject.name=web-1")
    assert matcher is not None
    assert matcher({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "web-1"}})
    assert not matcher({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "web-2"}})


@pytest.mark.parametrize(
    ("group", "plural", "selector"),
    [
        ("", "configmaps", "data.key=v"),
        ("", "pods", "spec.containers=x"),
        ("apps", "deployments", "status.phase=Running"),
        ("", "secrets", "metadata.labels=x"),
        ("networking.k8s.io", "ingresses", "foo.bar=baz"),
    ],
)
def test_unsupported_field_labels_are_400(group: str, plural: str, selector: str) -> None:
    with pytest.raises(StatusError) as excinfo:
        field_matcher(group, plural, selector)
    assert (excinfo.value.code, excinfo.value.reason) == (400, "BadRequest")


@pytest.mark.parametrize(
    ("group", "plural", "selector", "message"),
    [
        # Kinds with a field label conversion function of their own (pods, secrets, ...).
        ("", "pods", "spec.containers=x", "field label not supported: spec.containers"),
        ("", "secrets", "metadata.labels=x", "field label not supported: metadata.labels"),
        # Kinds without one: runtime.DefaultMetaV1FieldSelectorConversion (the Kubernetes docs' example).
        (
            "networking.k8s.io",
            "ingresses",
            "foo.bar=baz",
            '"foo.bar" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
    ],
)
def test_unsupported_field_label_messages(group: str, plural: str, selector: str, message: str) -> None:
    with pytest.raises(StatusError) as excinfo:
        field_matcher(group, plural, selector)
    assert excinfo.value.message == message


def test_a_field_selector_without_an_operator_is_400() -> None:
    with pytest.raises(StatusError) as excinfo:
        field_matcher("", "pods", "metadata.name")
    assert excinfo.value.code == 400
    assert excinfo.value.message == "invalid selector: 'metadata.name'; can't understand 'metadata.name'"


@pytest.mark.parametrize("selector", ["", "  "])
def test_an_empty_field_selector_selects_everything(selector: str) -> None:
    assert field_matcher("", "pods", selector) is None


def test_all_of_ands_the_predicates_it_is_given() -> None:
    def named_a(obj: JsonObject) -> bool:
        return bool(obj["metadata"]["name"] == "a")

    def in_default(obj: JsonObject) -> bool:
        return bool(obj["metadata"]["namespace"] == "default")

    assert all_of()(pod("z", "other"))
    assert all_of(None, None)(pod("z", "other"))
    assert all_of(named_a, None)(pod("a")) and not all_of(named_a)(pod("b"))
    both = all_of(named_a, in_default)
    assert both(pod("a")) and not both(pod("a", "other")) and not both(pod("b"))
