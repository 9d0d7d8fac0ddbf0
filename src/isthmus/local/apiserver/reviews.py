"""Access reviews (authorization.k8s.io/v1): `kubectl auth can-i` and SubjectAccessReviews, answered by the
server's own authorizers. Reviews are computed, never stored.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from isthmus.local.apiserver.auth import Attributes, AuthChain, UserInfo
from isthmus.local.apiserver.errors import StatusError, bad_request
from isthmus.local.apiserver.handlers import ApiHandlers, RequestInfo, json_response
from isthmus.local.apiserver.protobuf.decode import PROTOBUF_CONTENT_TYPE, decode_object

JsonObject = dict[str, Any]


def _attributes(user: UserInfo, spec: JsonObject) -> Attributes:
    resource = spec.get("resourceAttributes")
    if isinstance(resource, dict):
        return Attributes(
            user,
            str(resource.get("verb", "")),
            str(resource.get("group", "")),
            str(resource.get("resource", "")),
            str(resource.get("subresource", "")),
            str(resource.get("namespace", "")),
            str(resource.get("name", "")),
        )
    non_resource = spec.get("nonResourceAttributes")
    if isinstance(non_resource, dict):
        return Attributes(user, str(non_resource.get("verb", "")), path=str(non_resource.get("path", "")))
    raise bad_request("spec.resourceAttributes or spec.nonResourceAttributes is required")


async def _body(request: web.Request, kind: str, spec: bool = True) -> JsonObject:
    """The review object of a request, JSON or protobuf (kubectl's typed clients send protobuf)."""
    content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
    raw = await request.read()
    if content_type == PROTOBUF_CONTENT_TYPE:
        body = decode_object(raw)
    else:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad_request(
                f"the object provided is unrecognized (must be of type {kind}): couldn't get version/kind; "
                f"json parse error: {exc}"
            ) from None
    if not isinstance(body, dict) or (spec and not isinstance(body.get("spec"), dict)):
        raise bad_request(f"a {kind} needs a spec")
    return body


def _answer(body: JsonObject, kind: str, allowed: bool, reason: str) -> web.Response:
    status: JsonObject = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    if not allowed:
        status["denied"] = False
    return json_response(
        {
            "kind": kind,
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": body.get("metadata") or {},
            "spec": body["spec"],
            "status": status,
        },
        201,
    )


class AccessReviews:
    """Handlers for SelfSubjectAccessReview and SubjectAccessReview."""

    def __init__(self, auth: AuthChain) -> None:
        self.auth = auth

    def install(self, handlers: ApiHandlers) -> None:
        group = "authorization.k8s.io"
        handlers.virtual_handlers[(group, "selfsubjectaccessreviews")] = self.self_review
        handlers.virtual_handlers[(group, "subjectaccessreviews")] = self.subject_review
        handlers.virtual_handlers[(group, "localsubjectaccessreviews")] = self.local_subject_review
        handlers.virtual_handlers[("authentication.k8s.io", "selfsubjectreviews")] = self.whoami

    async def self_review(
        self, request: web.Request, info: RequestInfo, user: UserInfo
    ) -> web.StreamResponse:
        body = await _body(request, "SelfSubjectAccessReview")
        allowed, reason = self.auth.authorize(_attributes(user, body["spec"]))
        return _answer(body, "SelfSubjectAccessReview", allowed, reason)

    async def whoami(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.StreamResponse:
        """SelfSubjectReview (`kubectl auth whoami`): the caller's own user info."""
        body = await _body(request, "SelfSubjectReview", spec=False)
        user_info: JsonObject = {"username": user.name, "groups": list(user.groups)}
        if user.uid:
            user_info["uid"] = user.uid
        if user.extra:
            user_info["extra"] = {k: list(v) for k, v in user.extra.items()}
        return json_response(
            {
                "kind": "SelfSubjectReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": body.get("metadata") or {},
                "status": {"userInfo": user_info},
            },
            201,
        )

    async def local_subject_review(
        self, request: web.Request, info: RequestInfo, user: UserInfo
    ) -> web.StreamResponse:
        """A SubjectAccessReview confined to the request's namespace."""
        body = await _body(request, "LocalSubjectAccessReview")
        resource = body["spec"].get("resourceAttributes")
        if isinstance(resource, dict):
            if resource.get("namespace", info.namespace) != info.namespace:
                raise bad_request("spec.resourceAttributes.namespace must match the namespace of the request")
            resource["namespace"] = info.namespace
        return self._review(body, "LocalSubjectAccessReview")

    async def subject_review(
        self, request: web.Request, info: RequestInfo, user: UserInfo
    ) -> web.StreamResponse:
        return self._review(await _body(request, "SubjectAccessReview"), "SubjectAccessReview")

    def _review(self, body: JsonObject, kind: str) -> web.Response:
        spec = body["spec"]
        name = spec.get("user")
        if not isinstance(name, str) or not name:
            raise StatusError(
                422,
                "Invalid",
                "SubjectAccessReview.authorization.k8s.io is invalid: spec.user: "
                'Invalid value: "": at least one of user or group must be specified',
            )
        subject = UserInfo(name, str(spec.get("uid", "")), tuple(spec.get("groups") or ()))
        allowed, reason = self.auth.authorize(_attributes(subject, spec))
        return _answer(body, kind, allowed, reason)
