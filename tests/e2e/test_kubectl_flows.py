"""The kubectl commands of the seed's guide, and everyday kubectl, against real local clusters."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import yaml

from tests.e2e.localkit import Kubectl, LocalClusters

MULTI_DOC = """\
apiVersion: v1
kind: Namespace
metadata:
  name: sample
---
apiVersion: v1
kind: Service
metadata:
  name: helloworld
  namespace: sample
  labels:
    app: helloworld
spec:
  ports:
  - port: 5000
    name: http
  selector:
    app: helloworld
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: helloworld-v1
  namespace: sample
  labels:
    app: helloworld
    version: v1
spec:
  replicas: 1
  selector:
    matchLabels:
      app: helloworld
      version: v1
  template:
    metadata:
      labels:
        app: helloworld
        version: v1
    spec:
      containers:
      - name: helloworld
        image: docker.io/istio/examples-helloworld-v1
        resources:
          requests:
            cpu: "100m"
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: 5000
        env:
        - name: A
          value: "1"
        - name: B
          value: "2"
"""

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.isthmus.dev
spec:
  group: example.isthmus.dev
  scope: Namespaced
  names:
    kind: Widget
    plural: widgets
    singular: widget
    shortNames: [wdg]
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
              color:
                type: string
                enum: [red, blue]
"""


def test_seed_secret_and_labels(kubectl: Kubectl, tmp_path: Path) -> None:
    """The guide's `create ns`, `create secret generic --from-file`, `label secret`, `label namespace`, jsonpath."""
    kubectl("create", "ns", "istio-system")
    kubeconfig_file = tmp_path / "cluster2"
    kubeconfig_file.write_text("apiVersion: v1\nkind: Config\n")
    kubectl(
        "create", "secret", "generic", "cluster2", "--from-file", str(kubeconfig_file), "-n", "istio-system"
    )
    kubectl("label", "secret", "cluster2", "istio/multiCluster=true", "-n", "istio-system")
    kubectl("label", "namespace", "default", "istio-injection=enabled")
    data = kubectl("get", "secret", "cluster2", "-n", "istio-system", "-o", "jsonpath={.data.cluster2}")
    assert base64.b64decode(data).decode() == "apiVersion: v1\nkind: Config\n"
    labels = kubectl(
        "get",
        "secret",
        "-n",
        "istio-system",
        "-l",
        "istio/multiCluster=true",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    )
    assert labels == "cluster2"
    assert kubectl("get", "ns", "default", "-o", "jsonpath={.metadata.labels.istio-injection}") == "enabled"
    kubectl("create", "serviceaccount", "istio-reader-service-account", "-n", "istio-system")
    name = kubectl(
        "get", "sa", "istio-reader-service-account", "-n", "istio-system", "-o", "jsonpath={.metadata.name}"
    )
    assert name == "istio-reader-service-account"
    server = kubectl("config", "view", "--minify=true", "-o", "jsonpath={.clusters[].cluster.server}")
    assert server.startswith("https://cluster1.") and server.endswith(".isthmus.internal:6443")
    assert kubectl("config", "view", "--minify=true", "-o", "jsonpath={.clusters[].name}") == "cluster1"


def test_get_prints_tables(kubectl: Kubectl) -> None:
    out = kubectl("get", "namespaces")
    header = out.splitlines()[0].split()
    assert header == ["NAME", "STATUS", "AGE"]
    assert any(line.split()[:2] == ["kube-system", "Active"] for line in out.splitlines())
    services = kubectl("get", "svc", "-n", "default")
    assert services.splitlines()[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert "443/TCP" in services


def test_apply_twice_then_delete(kubectl: Kubectl) -> None:
    """`apply -f` of a multi-document file creates, the second apply patches, `delete -f` waits until gone."""
    out = kubectl("apply", "-f", "-", stdin=MULTI_DOC)
    assert "namespace/sample created" in out and "deployment.apps/helloworld-v1 created" in out
    changed = MULTI_DOC.replace("replicas: 1", "replicas: 3").replace(
        '        - name: B\n          value: "2"\n', ""
    )
    out = kubectl("apply", "-f", "-", stdin=changed)
    assert "deployment.apps/helloworld-v1 configured" in out
    assert "service/helloworld unchanged" in out
    deploy = json.loads(kubectl("get", "deploy", "helloworld-v1", "-n", "sample", "-o", "json"))
    assert deploy["spec"]["replicas"] == 3
    env = deploy["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "1"}], "the env var removed from the file is removed by apply"
    assert deploy["metadata"]["generation"] == 2
    svc = json.loads(kubectl("get", "svc", "helloworld", "-n", "sample", "-o", "json"))
    assert svc["spec"]["clusterIP"] and svc["spec"]["ports"][0]["targetPort"] == 5000
    out = kubectl("delete", "-f", "-", stdin=MULTI_DOC)
    assert 'namespace "sample" deleted' in out
    gone = kubectl.run("get", "ns", "sample", check=False)
    assert gone.code != 0 and 'namespaces "sample" not found' in gone.err


def test_unknown_field_refused_like_a_real_cluster(kubectl: Kubectl) -> None:
    bad = (
        MULTI_DOC.split("---\n")[2]
        .replace("replicas:", "replicass:")
        .replace("namespace: sample", "namespace: default")
    )
    err = kubectl.fails("apply", "-f", "-", stdin=bad)
    assert 'strict decoding error: unknown field "spec.replicass"' in err
    assert kubectl.run("get", "deploy", "helloworld-v1", "-n", "default", check=False).code != 0


def test_watch_and_wait(kubectl: Kubectl, clusters: LocalClusters) -> None:
    kubectl("create", "ns", "watched")
    watch = subprocess.Popen(
        kubectl.argv("get", "configmaps", "-n", "watched", "-w", "--request-timeout", "20s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        kubectl("create", "configmap", "first", "-n", "watched", "--from-literal", "a=b")
        kubectl("create", "configmap", "second", "-n", "watched", "--from-literal", "a=b")
        deadline = time.monotonic() + 15
        seen = ""
        assert watch.stdout is not None
        while time.monotonic() < deadline and "second" not in seen:
            seen += watch.stdout.readline()
        assert "first" in seen and "second" in seen
        assert "DATA" in seen.splitlines()[0]
    finally:
        watch.kill()
        watch.wait()
    out = kubectl("wait", "--for=jsonpath={.data.a}=b", "configmap/first", "-n", "watched", "--timeout=10s")
    assert "condition met" in out
    kubectl("delete", "configmap", "first", "-n", "watched", "--wait=true")
    out = kubectl(
        "wait",
        "--for=delete",
        "configmap/first",
        "-n",
        "watched",
        "--timeout=5s",
    ).strip()
    assert out == "" or "deleted" in out or "condition met" in out


def test_api_resources(kubectl: Kubectl) -> None:
    out = kubectl("api-resources")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["deployments"][1:] == ["deploy", "apps/v1", "true", "Deployment"]
    assert rows["namespaces"][1:] == ["ns", "v1", "false", "Namespace"]
    assert "customresourcedefinitions" in rows and "endpointslices" in rows and "leases" in rows


def test_crd_then_custom_resource(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=CRD)
    kubectl("wait", "--for=condition=established", "crd/widgets.example.isthmus.dev", "--timeout=20s")
    widget = (
        "apiVersion: example.isthmus.dev/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\n"
        "spec:\n  size: 3\n  color: red\n"
    )
    kubectl("apply", "-f", "-", stdin=widget)
    got = json.loads(kubectl("get", "widget", "w1", "-o", "json"))
    assert got["spec"] == {"size": 3, "color": "red"} and got["apiVersion"] == "example.isthmus.dev/v1"
    older = json.loads(kubectl("get", "widgets.v1beta1.example.isthmus.dev", "w1", "-o", "json"))
    assert older["apiVersion"] == "example.isthmus.dev/v1beta1" and older["spec"]["size"] == 3
    table = kubectl("get", "wdg")
    assert table.splitlines()[0].split() == ["NAME", "SIZE"]  # declared columns only, as Kubernetes
    assert table.splitlines()[1].split()[:2] == ["w1", "3"]
    err = kubectl.fails("apply", "-f", "-", stdin=widget.replace("color: red", "color: green"))
    assert 'Unsupported value: "green"' in err
    err = kubectl.fails("apply", "-f", "-", stdin=widget.replace("size: 3", "size: 3\n  shape: round"))
    assert 'unknown field "spec.shape"' in err
    kubectl("delete", "crd", "widgets.example.isthmus.dev")
    assert kubectl.run("get", "widgets", check=False).code != 0


def test_kubeconfig_contexts(clusters: LocalClusters) -> None:
    config = yaml.safe_load(clusters.kubeconfig.read_text())
    names = [c["name"] for c in config["contexts"]]
    assert names == ["cluster1", "cluster2"]
    assert [c["name"] for c in config["clusters"]] == names and [u["name"] for u in config["users"]] == names


def test_explain_uses_the_servers_openapi(kubectl: Kubectl) -> None:
    out = kubectl("explain", "deployment.spec.strategy")
    assert "GROUP:      apps\nKIND:       Deployment\nVERSION:    v1" in out
    assert "rollingUpdate\t<RollingUpdateDeployment>" in out
    assert "type\t<string>" in out
    pods = kubectl("explain", "pods.spec.containers.image")
    assert "Container image name" in pods


def test_server_side_apply_conflicts_and_force(kubectl: Kubectl) -> None:
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: default\ndata:\n  owner: first\n"
    kubectl("apply", "--server-side", "--field-manager", "first", "-f", "-", stdin=config)
    err = kubectl.fails(
        "apply",
        "--server-side",
        "--field-manager",
        "second",
        "-f",
        "-",
        stdin=config.replace("owner: first", "owner: second"),
    )
    assert "conflict" in err.lower() and 'with "first"' in err and ".data.owner" in err
    kubectl(
        "apply",
        "--server-side",
        "--field-manager",
        "second",
        "--force-conflicts",
        "-f",
        "-",
        stdin=config.replace("owner: first", "owner: second"),
    )
    got = json.loads(kubectl("get", "configmap", "ssa", "-o", "json", "--show-managed-fields"))
    assert got["data"]["owner"] == "second"
    managers = {entry["manager"]: entry for entry in got["metadata"]["managedFields"]}
    assert managers["second"]["operation"] == "Apply"
    assert "f:owner" in managers["second"]["fieldsV1"]["f:data"]


def test_dry_run_changes_nothing(kubectl: Kubectl) -> None:
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry\n  namespace: default\ndata:\n  a: b\n"
    out = kubectl("apply", "--dry-run=server", "-f", "-", stdin=config)
    assert "configmap/dry created (server dry run)" in out
    assert kubectl.run("get", "configmap", "dry", check=False).code != 0


def _owned_pair(kubectl: Kubectl, owner: str) -> str:
    kubectl("create", "configmap", owner, "--from-literal", "role=owner")
    uid = kubectl("get", "configmap", owner, "-o", "jsonpath={.metadata.uid}")
    dependent = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{owner}-dependent",
                "namespace": "default",
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid}],
            },
            "data": {"role": "dependent"},
        }
    )
    kubectl("apply", "-f", "-", stdin=dependent)
    return f"{owner}-dependent"


def _gone_within(kubectl: Kubectl, *args: str, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if kubectl.run(*args, check=False).code != 0:
            return True
        time.sleep(0.2)
    return False


def test_garbage_collection_follows_owner_references(kubectl: Kubectl) -> None:
    background = _owned_pair(kubectl, "gc-background")
    kubectl("delete", "configmap", "gc-background")
    assert _gone_within(kubectl, "get", "configmap", background), "background deletion removes the dependent"

    orphan = _owned_pair(kubectl, "gc-orphan")
    kubectl("delete", "configmap", "gc-orphan", "--cascade=orphan")
    refs = kubectl("get", "configmap", orphan, "-o", "jsonpath={.metadata.ownerReferences}")
    assert refs == "", "an orphaned dependent stays, without its owner reference"

    foreground = _owned_pair(kubectl, "gc-foreground")
    kubectl("delete", "configmap", "gc-foreground", "--cascade=foreground")
    assert kubectl.run("get", "configmap", foreground, check=False).code != 0
    assert kubectl.run("get", "configmap", "gc-foreground", check=False).code != 0


def test_finalizers_hold_deletion(kubectl: Kubectl) -> None:
    held = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: default\n"
        "  finalizers: [example.com/hold]\n"
    )
    kubectl("apply", "-f", "-", stdin=held)
    kubectl("delete", "configmap", "held", "--wait=false")
    assert kubectl("get", "configmap", "held", "-o", "jsonpath={.metadata.deletionTimestamp}")
    kubectl("patch", "configmap", "held", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    assert _gone_within(kubectl, "get", "configmap", "held")
