"""The JSON form of every message of the `.proto` subset, and the kinds `decode_object` decodes.

One `fields(...)` table per message, with Go's pointer fields marked `pointer=True` (see `convert`). The
tables follow Kubernetes' Go types: a field Go writes even when unset (a non-pointer string, number, bool
or struct) is a plain `Value()` / `Object(...)`; a `*T` field is a pointer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from isthmus.local.apiserver.protobuf.convert import (
    FIELDS_V1,
    QUANTITY,
    TIME,
    Converter,
    Inline,
    IntOrStr,
    JsonObject,
    Map,
    Object,
    Objects,
    Value,
    Values,
    fields,
    strings,
)
from isthmus.local.apiserver.protobuf.generated.k8s.io.api.apps.v1 import generated_pb2 as appsv1
from isthmus.local.apiserver.protobuf.generated.k8s.io.api.authentication.v1 import (
    generated_pb2 as authnv1,
)
from isthmus.local.apiserver.protobuf.generated.k8s.io.api.authorization.v1 import (
    generated_pb2 as authzv1,
)
from isthmus.local.apiserver.protobuf.generated.k8s.io.api.batch.v1 import generated_pb2 as batchv1
from isthmus.local.apiserver.protobuf.generated.k8s.io.api.core.v1 import generated_pb2 as corev1
from isthmus.local.apiserver.protobuf.generated.k8s.io.api.networking.v1 import (
    generated_pb2 as networkingv1,
)
from isthmus.local.apiserver.protobuf.generated.k8s.io.api.policy.v1 import generated_pb2 as policyv1
from isthmus.local.apiserver.protobuf.generated.k8s.io.api.rbac.v1 import generated_pb2 as rbacv1
from isthmus.local.apiserver.protobuf.generated.k8s.io.api.scheduling.v1 import (
    generated_pb2 as schedulingv1,
)
from isthmus.local.apiserver.protobuf.generated.k8s.io.apimachinery.pkg.apis.meta.v1 import (
    generated_pb2 as metav1,
)

POINTER: Final = Value(pointer=True)

# --- meta/v1 ------------------------------------------------------------------------------------------

OWNER_REFERENCE = fields(
    metav1.OwnerReference,
    {
        "apiVersion": Value(),
        "kind": Value(),
        "name": Value(),
        "uid": Value(),
        "controller": POINTER,
        "blockOwnerDeletion": POINTER,
    },
)
MANAGED_FIELDS_ENTRY = fields(
    metav1.ManagedFieldsEntry,
    {
        "manager": Value(),
        "operation": Value(),
        "apiVersion": Value(),
        "time": Object(TIME),
        "fieldsType": Value(),
        "fieldsV1": Object(FIELDS_V1, pointer=True),
        "subresource": Value(),
    },
)
OBJECT_META = fields(
    metav1.ObjectMeta,
    {
        "name": Value(),
        "generateName": Value(),
        "namespace": Value(),
        "selfLink": Value(),
        "uid": Value(),
        "resourceVersion": Value(),
        "generation": Value(),
        "creationTimestamp": Object(TIME),
        "deletionTimestamp": Object(TIME, pointer=True),
        "deletionGracePeriodSeconds": POINTER,
        "labels": Map(),
        "annotations": Map(),
        "ownerReferences": Objects(OWNER_REFERENCE),
        "finalizers": Values(),
        "managedFields": Objects(MANAGED_FIELDS_ENTRY),
    },
)
METADATA: Final = Object(OBJECT_META)
LABEL_SELECTOR_REQUIREMENT = fields(
    metav1.LabelSelectorRequirement, {"key": Value(), "operator": Value(), "values": Values()}
)
LABEL_SELECTOR = fields(
    metav1.LabelSelector, {"matchLabels": Map(), "matchExpressions": Objects(LABEL_SELECTOR_REQUIREMENT)}
)
FIELD_SELECTOR_REQUIREMENT = fields(
    metav1.FieldSelectorRequirement, {"key": Value(), "operator": Value(), "values": Values()}
)

# --- core/v1 ------------------------------------------------------------------------------------------

NAMESPACE_CONDITION = fields(
    corev1.NamespaceCondition,
    {
        "type": Value(),
        "status": Value(),
        "lastTransitionTime": Object(TIME),
        "reason": Value(),
        "message": Value(),
    },
)
NAMESPACE = fields(
    corev1.Namespace,
    {
        "metadata": METADATA,
        "spec": Object(fields(corev1.NamespaceSpec, {"finalizers": Values()})),
        "status": Object(
            fields(corev1.NamespaceStatus, {"phase": Value(), "conditions": Objects(NAMESPACE_CONDITION)})
        ),
    },
)
SECRET = fields(
    corev1.Secret,
    {"metadata": METADATA, "immutable": POINTER, "data": Map(), "stringData": Map(), "type": Value()},
)
CONFIG_MAP = fields(
    corev1.ConfigMap, {"metadata": METADATA, "immutable": POINTER, "data": Map(), "binaryData": Map()}
)
OBJECT_REFERENCE = fields(
    corev1.ObjectReference,
    {
        "kind": Value(),
        "namespace": Value(),
        "name": Value(),
        "uid": Value(),
        "apiVersion": Value(),
        "resourceVersion": Value(),
        "fieldPath": Value(),
    },
)
LOCAL_OBJECT_REFERENCE = fields(corev1.LocalObjectReference, {"name": Value()})
TYPED_LOCAL_OBJECT_REFERENCE = fields(
    corev1.TypedLocalObjectReference, {"apiGroup": POINTER, "kind": Value(), "name": Value()}
)
SERVICE_ACCOUNT = fields(
    corev1.ServiceAccount,
    {
        "metadata": METADATA,
        "secrets": Objects(OBJECT_REFERENCE),
        "imagePullSecrets": Objects(LOCAL_OBJECT_REFERENCE),
        "automountServiceAccountToken": POINTER,
    },
)
CONTAINER = fields(
    corev1.Container,
    {
        "name": Value(),
        "image": Value(),
        "command": Values(),
        "args": Values(),
        "workingDir": Value(),
        "ports": Objects(
            fields(
                corev1.ContainerPort,
                {
                    "name": Value(),
                    "hostPort": Value(),
                    "containerPort": Value(),
                    "protocol": Value(),
                    "hostIP": Value(),
                },
            )
        ),
        "env": Objects(fields(corev1.EnvVar, {"name": Value(), "value": Value()})),
        "resources": Object(
            fields(corev1.ResourceRequirements, {"limits": Map(QUANTITY), "requests": Map(QUANTITY)})
        ),
        "restartPolicy": POINTER,
        "terminationMessagePath": Value(),
        "terminationMessagePolicy": Value(),
        "imagePullPolicy": Value(),
        "stdin": Value(),
        "stdinOnce": Value(),
        "tty": Value(),
    },
)
POD_SECURITY_CONTEXT = fields(
    corev1.PodSecurityContext,
    {
        "runAsUser": POINTER,
        "runAsGroup": POINTER,
        "runAsNonRoot": POINTER,
        "supplementalGroups": Values(),
        "supplementalGroupsPolicy": POINTER,
        "fsGroup": POINTER,
        "fsGroupChangePolicy": POINTER,
        "seLinuxChangePolicy": POINTER,
    },
)
POD_SPEC = fields(
    corev1.PodSpec,
    {
        "initContainers": Objects(CONTAINER),
        "containers": Objects(CONTAINER),
        "restartPolicy": Value(),
        "terminationGracePeriodSeconds": POINTER,
        "activeDeadlineSeconds": POINTER,
        "dnsPolicy": Value(),
        "nodeSelector": Map(),
        "serviceAccountName": Value(),
        "serviceAccount": Value(),
        "automountServiceAccountToken": POINTER,
        "nodeName": Value(),
        "hostNetwork": Value(),
        "hostPID": Value(),
        "hostIPC": Value(),
        "shareProcessNamespace": POINTER,
        "securityContext": Object(POD_SECURITY_CONTEXT, pointer=True),
        "imagePullSecrets": Objects(LOCAL_OBJECT_REFERENCE),
        "hostname": Value(),
        "subdomain": Value(),
        "schedulerName": Value(),
        "priorityClassName": Value(),
        "priority": POINTER,
        "runtimeClassName": POINTER,
        "enableServiceLinks": POINTER,
        "preemptionPolicy": POINTER,
        "setHostnameAsFQDN": POINTER,
        "hostUsers": POINTER,
    },
)
POD_TEMPLATE_SPEC = fields(corev1.PodTemplateSpec, {"metadata": METADATA, "spec": Object(POD_SPEC)})
RESOURCE_QUOTA = fields(
    corev1.ResourceQuota,
    {
        "metadata": METADATA,
        "spec": Object(fields(corev1.ResourceQuotaSpec, {"hard": Map(QUANTITY), "scopes": Values()})),
        "status": Object(fields(corev1.ResourceQuotaStatus, {"hard": Map(QUANTITY), "used": Map(QUANTITY)})),
    },
)
SERVICE_PORT = fields(
    corev1.ServicePort,
    {
        "name": Value(),
        "protocol": Value(),
        "appProtocol": POINTER,
        "port": Value(),
        "targetPort": IntOrStr(),
        "nodePort": Value(),
    },
)
SERVICE_SPEC = fields(
    corev1.ServiceSpec,
    {
        "ports": Objects(SERVICE_PORT),
        "selector": Map(),
        "clusterIP": Value(),
        "clusterIPs": Values(),
        "type": Value(),
        "externalIPs": Values(),
        "sessionAffinity": Value(),
        "loadBalancerIP": Value(),
        "loadBalancerSourceRanges": Values(),
        "externalName": Value(),
        "externalTrafficPolicy": Value(),
        "healthCheckNodePort": Value(),
        "publishNotReadyAddresses": Value(),
        "ipFamilies": Values(),
        "ipFamilyPolicy": POINTER,
        "allocateLoadBalancerNodePorts": POINTER,
        "loadBalancerClass": POINTER,
        "internalTrafficPolicy": POINTER,
        "trafficDistribution": POINTER,
    },
)
SERVICE = fields(
    corev1.Service,
    {
        "metadata": METADATA,
        "spec": Object(SERVICE_SPEC),
        "status": Object(
            fields(corev1.ServiceStatus, {"loadBalancer": Object(fields(corev1.LoadBalancerStatus, {}))})
        ),
    },
)

# --- apps/v1 ------------------------------------------------------------------------------------------

DEPLOYMENT_STRATEGY = fields(
    appsv1.DeploymentStrategy,
    {
        "type": Value(),
        "rollingUpdate": Object(
            fields(
                appsv1.RollingUpdateDeployment,
                {"maxUnavailable": IntOrStr(pointer=True), "maxSurge": IntOrStr(pointer=True)},
            ),
            pointer=True,
        ),
    },
)
DEPLOYMENT = fields(
    appsv1.Deployment,
    {
        "metadata": METADATA,
        "spec": Object(
            fields(
                appsv1.DeploymentSpec,
                {
                    "replicas": POINTER,
                    "selector": Object(LABEL_SELECTOR, pointer=True),
                    "template": Object(POD_TEMPLATE_SPEC),
                    "strategy": Object(DEPLOYMENT_STRATEGY),
                    "minReadySeconds": Value(),
                    "revisionHistoryLimit": POINTER,
                    "paused": Value(),
                    "progressDeadlineSeconds": POINTER,
                },
            )
        ),
        "status": Object(
            fields(
                appsv1.DeploymentStatus,
                {
                    "observedGeneration": Value(),
                    "replicas": Value(),
                    "updatedReplicas": Value(),
                    "readyReplicas": Value(),
                    "availableReplicas": Value(),
                    "unavailableReplicas": Value(),
                    "terminatingReplicas": POINTER,
                    "collisionCount": POINTER,
                },
            )
        ),
    },
)

# --- batch/v1 -----------------------------------------------------------------------------------------

JOB_SPEC = fields(
    batchv1.JobSpec,
    {
        "parallelism": POINTER,
        "completions": POINTER,
        "activeDeadlineSeconds": POINTER,
        "backoffLimit": POINTER,
        "backoffLimitPerIndex": POINTER,
        "maxFailedIndexes": POINTER,
        "selector": Object(LABEL_SELECTOR, pointer=True),
        "manualSelector": POINTER,
        "template": Object(POD_TEMPLATE_SPEC),
        "ttlSecondsAfterFinished": POINTER,
        "completionMode": POINTER,
        "suspend": POINTER,
        "podReplacementPolicy": POINTER,
        "managedBy": POINTER,
    },
)
JOB = fields(
    batchv1.Job,
    {
        "metadata": METADATA,
        "spec": Object(JOB_SPEC),
        "status": Object(
            fields(
                batchv1.JobStatus,
                {
                    "startTime": Object(TIME, pointer=True),
                    "completionTime": Object(TIME, pointer=True),
                    "active": Value(),
                    "succeeded": Value(),
                    "failed": Value(),
                    "terminating": POINTER,
                    "completedIndexes": Value(),
                    "failedIndexes": POINTER,
                    "ready": POINTER,
                },
            )
        ),
    },
)
CRON_JOB = fields(
    batchv1.CronJob,
    {
        "metadata": METADATA,
        "spec": Object(
            fields(
                batchv1.CronJobSpec,
                {
                    "schedule": Value(),
                    "timeZone": POINTER,
                    "startingDeadlineSeconds": POINTER,
                    "concurrencyPolicy": Value(),
                    "suspend": POINTER,
                    "jobTemplate": Object(
                        fields(batchv1.JobTemplateSpec, {"metadata": METADATA, "spec": Object(JOB_SPEC)})
                    ),
                    "successfulJobsHistoryLimit": POINTER,
                    "failedJobsHistoryLimit": POINTER,
                },
            )
        ),
        "status": Object(
            fields(
                batchv1.CronJobStatus,
                {
                    "active": Objects(OBJECT_REFERENCE),
                    "lastScheduleTime": Object(TIME, pointer=True),
                    "lastSuccessfulTime": Object(TIME, pointer=True),
                },
            )
        ),
    },
)

# --- rbac/v1 ------------------------------------------------------------------------------------------

POLICY_RULE = fields(
    rbacv1.PolicyRule,
    {
        "verbs": Values(),
        "apiGroups": Values(),
        "resources": Values(),
        "resourceNames": Values(),
        "nonResourceURLs": Values(),
    },
)
ROLE = fields(rbacv1.Role, {"metadata": METADATA, "rules": Objects(POLICY_RULE)})
CLUSTER_ROLE = fields(
    rbacv1.ClusterRole,
    {
        "metadata": METADATA,
        "rules": Objects(POLICY_RULE),
        "aggregationRule": Object(
            fields(rbacv1.AggregationRule, {"clusterRoleSelectors": Objects(LABEL_SELECTOR)}), pointer=True
        ),
    },
)
SUBJECT = fields(
    rbacv1.Subject, {"kind": Value(), "apiGroup": Value(), "name": Value(), "namespace": Value()}
)
ROLE_REF = fields(rbacv1.RoleRef, {"apiGroup": Value(), "kind": Value(), "name": Value()})
BINDING_RULES: Final = {"metadata": METADATA, "subjects": Objects(SUBJECT), "roleRef": Object(ROLE_REF)}
ROLE_BINDING = fields(rbacv1.RoleBinding, BINDING_RULES)
CLUSTER_ROLE_BINDING = fields(rbacv1.ClusterRoleBinding, BINDING_RULES)

# --- scheduling/v1, policy/v1 -------------------------------------------------------------------------

PRIORITY_CLASS = fields(
    schedulingv1.PriorityClass,
    {
        "metadata": METADATA,
        "value": Value(always=True),
        "globalDefault": Value(),
        "description": Value(),
        "preemptionPolicy": POINTER,
    },
)
POD_DISRUPTION_BUDGET = fields(
    policyv1.PodDisruptionBudget,
    {
        "metadata": METADATA,
        "spec": Object(
            fields(
                policyv1.PodDisruptionBudgetSpec,
                {
                    "minAvailable": IntOrStr(pointer=True),
                    "selector": Object(LABEL_SELECTOR, pointer=True),
                    "maxUnavailable": IntOrStr(pointer=True),
                    "unhealthyPodEvictionPolicy": POINTER,
                },
            )
        ),
        "status": Object(
            fields(
                policyv1.PodDisruptionBudgetStatus,
                {
                    "observedGeneration": Value(),
                    "disruptedPods": Map(TIME),
                    "disruptionsAllowed": Value(),
                    "currentHealthy": Value(),
                    "desiredHealthy": Value(),
                    "expectedPods": Value(),
                },
            )
        ),
    },
)

# --- networking/v1 ------------------------------------------------------------------------------------

INGRESS_BACKEND = fields(
    networkingv1.IngressBackend,
    {
        "service": Object(
            fields(
                networkingv1.IngressServiceBackend,
                {
                    "name": Value(),
                    "port": Object(
                        fields(networkingv1.ServiceBackendPort, {"name": Value(), "number": Value()})
                    ),
                },
            ),
            pointer=True,
        ),
        "resource": Object(TYPED_LOCAL_OBJECT_REFERENCE, pointer=True),
    },
)
HTTP_INGRESS_PATH = fields(
    networkingv1.HTTPIngressPath,
    {"path": Value(), "pathType": POINTER, "backend": Object(INGRESS_BACKEND)},
)
INGRESS_RULE = fields(
    networkingv1.IngressRule,
    {
        "host": Value(),
        # In JSON the IngressRuleValue is inline: "http" is a key of the rule.
        "ingressRuleValue": Inline(
            fields(
                networkingv1.IngressRuleValue,
                {
                    "http": Object(
                        fields(networkingv1.HTTPIngressRuleValue, {"paths": Objects(HTTP_INGRESS_PATH)}),
                        pointer=True,
                    )
                },
            )
        ),
    },
)
INGRESS = fields(
    networkingv1.Ingress,
    {
        "metadata": METADATA,
        "spec": Object(
            fields(
                networkingv1.IngressSpec,
                {
                    "ingressClassName": POINTER,
                    "defaultBackend": Object(INGRESS_BACKEND, pointer=True),
                    "tls": Objects(
                        fields(networkingv1.IngressTLS, {"hosts": Values(), "secretName": Value()})
                    ),
                    "rules": Objects(INGRESS_RULE),
                },
            )
        ),
        "status": Object(
            fields(
                networkingv1.IngressStatus,
                {"loadBalancer": Object(fields(networkingv1.IngressLoadBalancerStatus, {}))},
            )
        ),
    },
)

# --- authentication/v1 --------------------------------------------------------------------------------


def _authn_extra_value(value: authnv1.ExtraValue, path: str) -> list[str]:
    """An ExtraValue is a bare list of strings in JSON."""
    return strings(value.items, path)


USER_INFO = fields(
    authnv1.UserInfo,
    {
        "username": Value(),
        "uid": Value(),
        "groups": Values(),
        "extra": Map(Converter(authnv1.ExtraValue, _authn_extra_value)),
    },
)
TOKEN_REQUEST = fields(
    authnv1.TokenRequest,
    {
        "metadata": METADATA,
        "spec": Object(
            fields(
                authnv1.TokenRequestSpec,
                {
                    "audiences": Values(),
                    "expirationSeconds": POINTER,
                    "boundObjectRef": Object(
                        fields(
                            authnv1.BoundObjectReference,
                            {
                                "kind": Value(),
                                "apiVersion": Value(),
                                "name": Value(),
                                "uID": Value(json_name="uid"),
                            },
                        ),
                        pointer=True,
                    ),
                },
            )
        ),
        "status": Object(
            fields(authnv1.TokenRequestStatus, {"token": Value(), "expirationTimestamp": Object(TIME)})
        ),
    },
)
TOKEN_REVIEW = fields(
    authnv1.TokenReview,
    {
        "metadata": METADATA,
        "spec": Object(fields(authnv1.TokenReviewSpec, {"token": Value(), "audiences": Values()})),
        "status": Object(
            fields(
                authnv1.TokenReviewStatus,
                {
                    "authenticated": Value(),
                    "user": Object(USER_INFO),
                    "audiences": Values(),
                    "error": Value(),
                },
            )
        ),
    },
)
SELF_SUBJECT_REVIEW = fields(
    authnv1.SelfSubjectReview,
    {
        "metadata": METADATA,
        "status": Object(fields(authnv1.SelfSubjectReviewStatus, {"userInfo": Object(USER_INFO)})),
    },
)

# --- authorization/v1 ---------------------------------------------------------------------------------


def _authz_extra_value(value: authzv1.ExtraValue, path: str) -> list[str]:
    """An ExtraValue is a bare list of strings in JSON."""
    return strings(value.items, path)


RESOURCE_ATTRIBUTES = fields(
    authzv1.ResourceAttributes,
    {
        "namespace": Value(),
        "verb": Value(),
        "group": Value(),
        "version": Value(),
        "resource": Value(),
        "subresource": Value(),
        "name": Value(),
        "fieldSelector": Object(
            fields(
                authzv1.FieldSelectorAttributes,
                {"rawSelector": Value(), "requirements": Objects(FIELD_SELECTOR_REQUIREMENT)},
            ),
            pointer=True,
        ),
        "labelSelector": Object(
            fields(
                authzv1.LabelSelectorAttributes,
                {"rawSelector": Value(), "requirements": Objects(LABEL_SELECTOR_REQUIREMENT)},
            ),
            pointer=True,
        ),
    },
)
NON_RESOURCE_ATTRIBUTES = fields(authzv1.NonResourceAttributes, {"path": Value(), "verb": Value()})
SUBJECT_ACCESS_REVIEW_SPEC = fields(
    authzv1.SubjectAccessReviewSpec,
    {
        "resourceAttributes": Object(RESOURCE_ATTRIBUTES, pointer=True),
        "nonResourceAttributes": Object(NON_RESOURCE_ATTRIBUTES, pointer=True),
        "user": Value(),
        "groups": Values(),
        "extra": Map(Converter(authzv1.ExtraValue, _authz_extra_value)),
        "uid": Value(),
    },
)
SUBJECT_ACCESS_REVIEW_STATUS = fields(
    authzv1.SubjectAccessReviewStatus,
    {"allowed": Value(), "denied": Value(), "reason": Value(), "evaluationError": Value()},
)
SUBJECT_ACCESS_REVIEW_RULES: Final = {
    "metadata": METADATA,
    "spec": Object(SUBJECT_ACCESS_REVIEW_SPEC),
    "status": Object(SUBJECT_ACCESS_REVIEW_STATUS),
}
SELF_SUBJECT_ACCESS_REVIEW = fields(
    authzv1.SelfSubjectAccessReview,
    {
        "metadata": METADATA,
        "spec": Object(
            fields(
                authzv1.SelfSubjectAccessReviewSpec,
                {
                    "resourceAttributes": Object(RESOURCE_ATTRIBUTES, pointer=True),
                    "nonResourceAttributes": Object(NON_RESOURCE_ATTRIBUTES, pointer=True),
                },
            )
        ),
        "status": Object(SUBJECT_ACCESS_REVIEW_STATUS),
    },
)
SELF_SUBJECT_RULES_REVIEW = fields(
    authzv1.SelfSubjectRulesReview,
    {
        "metadata": METADATA,
        "spec": Object(fields(authzv1.SelfSubjectRulesReviewSpec, {"namespace": Value()})),
        "status": Object(
            fields(
                authzv1.SubjectRulesReviewStatus,
                {
                    "resourceRules": Objects(
                        fields(
                            authzv1.ResourceRule,
                            {
                                "verbs": Values(),
                                "apiGroups": Values(),
                                "resources": Values(),
                                "resourceNames": Values(),
                            },
                        )
                    ),
                    "nonResourceRules": Objects(
                        fields(authzv1.NonResourceRule, {"verbs": Values(), "nonResourceURLs": Values()})
                    ),
                    "incomplete": Value(),
                    "evaluationError": Value(),
                },
            )
        ),
    },
)

# --- the kinds ----------------------------------------------------------------------------------------

KINDS: Final[Mapping[tuple[str, str], Converter[Any, JsonObject]]] = {
    ("v1", "Namespace"): NAMESPACE,
    ("v1", "Secret"): SECRET,
    ("v1", "ConfigMap"): CONFIG_MAP,
    ("v1", "ServiceAccount"): SERVICE_ACCOUNT,
    ("v1", "Service"): SERVICE,
    ("v1", "ResourceQuota"): RESOURCE_QUOTA,
    ("apps/v1", "Deployment"): DEPLOYMENT,
    ("batch/v1", "Job"): JOB,
    ("batch/v1", "CronJob"): CRON_JOB,
    ("rbac.authorization.k8s.io/v1", "Role"): ROLE,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): CLUSTER_ROLE,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ROLE_BINDING,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): CLUSTER_ROLE_BINDING,
    ("scheduling.k8s.io/v1", "PriorityClass"): PRIORITY_CLASS,
    ("policy/v1", "PodDisruptionBudget"): POD_DISRUPTION_BUDGET,
    ("networking.k8s.io/v1", "Ingress"): INGRESS,
    ("authentication.k8s.io/v1", "TokenRequest"): TOKEN_REQUEST,
    ("authentication.k8s.io/v1", "TokenReview"): TOKEN_REVIEW,
    ("authentication.k8s.io/v1", "SelfSubjectReview"): SELF_SUBJECT_REVIEW,
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): SELF_SUBJECT_ACCESS_REVIEW,
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): SELF_SUBJECT_RULES_REVIEW,
    ("authorization.k8s.io/v1", "SubjectAccessReview"): fields(
        authzv1.SubjectAccessReview, SUBJECT_ACCESS_REVIEW_RULES
    ),
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): fields(
        authzv1.LocalSubjectAccessReview, SUBJECT_ACCESS_REVIEW_RULES
    ),
}
