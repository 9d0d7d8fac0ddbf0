"""Reading request bodies sent as Kubernetes protobuf (`application/vnd.kubernetes.protobuf`).

kubectl 1.32 and later send protobuf, not JSON, for every typed request of their built-in clientset
(`kubectl create namespace|secret|configmap|serviceaccount|token|deployment|service|job|cronjob|role|...`,
`kubectl auth can-i|whoami`), and do not fall back to JSON. `decode.decode_object` turns such a body into
the JSON-form object the rest of the server handles.

- `proto/`: the subset of Kubernetes' `.proto` files those bodies need, with Kubernetes' package names and
  field numbers, laid out as Kubernetes' import paths (`k8s.io/api/core/v1/generated.proto`, ...).
- `generated/`: the Python code (and mypy stubs) generated from them by `scripts/gen-protos.sh`; not edited
  by hand.
- `decode.py`: the envelope (`k8s\\x00` + `runtime.Unknown`) and the kinds it decodes.
- `convert.py`: the rules that turn a message into JSON form (pointers, IntOrString, Quantity, Time, ...);
  `kinds.py`: those rules for every message and field of the subset.
"""
