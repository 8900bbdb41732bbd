"""Handlers for what the generic registry does not do: reviews and special subresources.

- authentication.k8s.io: selfsubjectreviews (`kubectl auth whoami`), tokenreviews;
- authorization.k8s.io: self/local/subject access reviews (`kubectl auth can-i`) and
  selfsubjectrulesreviews (`can-i --list`), answered by the RBAC authorizer;
- pods/binding (the scheduler's write), pods/eviction, serviceaccounts/token,
  namespaces/finalize.

Each handler takes (request, request info, resource) and returns a Response. What reaches
a kubelet (pods/log, exec, attach, port-forward) is in nodeproxy.py; the proxy subresources
of pods, services and nodes are in proxy.py; metrics.k8s.io is in metrics.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from ..machinery import errors
from ..machinery.meta import rfc3339
from .authn import Authenticator, ServiceAccountTokens
from .http import Handler, Request, Response
from .rbac import RBACAuthorizer, UserInfo
from .registry import Resource, ResourceTable
from .registry.generic import GenericRegistry, WriteOptions
from .requestinfo import RequestInfo

MAX_TOKEN_SECONDS = 2**32
MIN_TOKEN_SECONDS = 600


def _user_info_dict(user: UserInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"username": user.username, "groups": list(user.groups)}
    if user.uid:
        out["uid"] = user.uid
    if user.extra:
        out["extra"] = {k: list(v) for k, v in user.extra.items()}
    return out


def _review_body(request: Request, res: Resource) -> dict[str, Any]:
    if request.method != "POST":
        raise errors.method_not_allowed()
    body = request.decode_body()
    if not isinstance(body, dict):
        raise errors.bad_request(f"the body of the request must be a {res.kind} object")
    for field_name, expected in (("apiVersion", res.group_version), ("kind", res.kind)):
        if body.get(field_name) not in (None, expected):
            raise errors.bad_request(
                f"the {field_name} in the data ({body[field_name]}) does not match the expected "
                f"{field_name} ({expected})")
    body["apiVersion"], body["kind"] = res.group_version, res.kind
    body.setdefault("metadata", {})
    if not isinstance(body.get("spec", {}), dict):
        raise errors.bad_request("spec must be an object")
    return body


def _created(body: dict[str, Any]) -> Response:
    return Response(201, orjson.dumps(body))


class SpecialHandlers:
    def __init__(
        self,
        *,
        table: ResourceTable,
        registry: GenericRegistry,
        authenticator: Authenticator,
        authorizer: RBACAuthorizer,
        tokens: ServiceAccountTokens,
    ) -> None:
        self.table = table
        self.registry = registry
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.tokens = tokens

    def handlers(self) -> dict[tuple[str, str], Handler]:
        return {
            ("selfsubjectreviews.authentication.k8s.io", ""): self.self_subject_review,
            ("tokenreviews.authentication.k8s.io", ""): self.token_review,
            ("selfsubjectaccessreviews.authorization.k8s.io", ""): self.access_review,
            ("subjectaccessreviews.authorization.k8s.io", ""): self.access_review,
            ("localsubjectaccessreviews.authorization.k8s.io", ""): self.access_review,
            ("selfsubjectrulesreviews.authorization.k8s.io", ""): self.rules_review,
            ("pods", "binding"): self.bind_pod,
            ("pods", "eviction"): self.evict_pod,
            ("serviceaccounts", "token"): self.token_request,
            ("namespaces", "finalize"): self.finalize_namespace,
        }

    # -- reviews -----------------------------------------------------------------------

    async def self_subject_review(self, request: Request, info: RequestInfo,
                                  res: Resource) -> Response:
        body = _review_body(request, res)
        assert request.user is not None
        body["status"] = {"userInfo": _user_info_dict(request.user)}
        return _created(body)

    async def token_review(self, request: Request, info: RequestInfo, res: Resource) -> Response:
        body = _review_body(request, res)
        spec = body.get("spec") or {}
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise errors.invalid(res.kind, "", [errors.required("spec.token")], res.group)
        audiences = tuple(spec.get("audiences") or ()) or None
        user = (await self.authenticator.authenticate_token(token, audiences)
                if audiences else await self.authenticator.authenticate_token(token))
        if user is None:
            body["status"] = {"authenticated": False, "user": {},
                              "error": "invalid bearer token"}
        else:
            body["status"] = {"authenticated": True, "user": _user_info_dict(user),
                              "audiences": list(audiences or ())}
        return _created(body)

    async def access_review(self, request: Request, info: RequestInfo, res: Resource) -> Response:
        body = _review_body(request, res)
        spec = body["spec"] if isinstance(body.get("spec"), dict) else {}
        assert request.user is not None
        if res.kind == "SelfSubjectAccessReview":
            user = request.user
        else:
            if not spec.get("user") and not spec.get("groups"):
                raise errors.invalid(res.kind, "", [errors.Cause(
                    "spec.user", "at least one of user or group must be specified",
                    errors.INVALID)], res.group)
            user = UserInfo(spec.get("user") or "", spec.get("uid") or "",
                            tuple(spec.get("groups") or ()),
                            {k: tuple(v) for k, v in (spec.get("extra") or {}).items()})
        resource_attrs = spec.get("resourceAttributes")
        non_resource = spec.get("nonResourceAttributes")
        if bool(resource_attrs) == bool(non_resource):
            raise errors.invalid(res.kind, "", [errors.Cause(
                "spec.resourceAttributes",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                errors.INVALID)], res.group)
        if resource_attrs:
            namespace = resource_attrs.get("namespace", "")
            if res.kind == "LocalSubjectAccessReview":
                if namespace and namespace != info.namespace:
                    raise errors.invalid(res.kind, "", [errors.invalid_value(
                        "spec.resourceAttributes.namespace", namespace,
                        "must match metadata.namespace")], res.group)
                namespace = info.namespace
                body["metadata"]["namespace"] = info.namespace
            allowed, reason = self.authorizer.authorize_attributes(
                user, verb=resource_attrs.get("verb", ""), namespace=namespace,
                group=resource_attrs.get("group", ""),
                resource=resource_attrs.get("resource", ""),
                subresource=resource_attrs.get("subresource", ""),
                name=resource_attrs.get("name", ""))
        else:
            allowed, reason = self.authorizer.authorize_attributes(
                user, verb=non_resource.get("verb", ""),
                non_resource_path=non_resource.get("path", ""))
        status: dict[str, Any] = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        body["status"] = status
        return _created(body)

    async def rules_review(self, request: Request, info: RequestInfo, res: Resource) -> Response:
        body = _review_body(request, res)
        namespace = (body.get("spec") or {}).get("namespace") or ""
        assert request.user is not None
        resource_rules, non_resource_rules, incomplete = self.authorizer.rules_for(
            request.user, namespace)
        body["status"] = {"resourceRules": resource_rules,
                          "nonResourceRules": non_resource_rules,
                          "incomplete": incomplete}
        return _created(body)

    # -- pods --------------------------------------------------------------------------

    async def bind_pod(self, request: Request, info: RequestInfo, res: Resource) -> Response:
        if request.method != "POST":
            raise errors.method_not_allowed()
        body = request.decode_body()
        target = body.get("target") if isinstance(body, dict) else None
        node = target.get("name") if isinstance(target, dict) else None
        if not isinstance(node, str) or not node:
            raise errors.invalid("Binding", info.name, [errors.required("target.name")])
        wanted_uid = ((body.get("metadata") or {}).get("uid"))
        opts = request.write_options()

        def bind(pod: dict[str, Any]) -> None:
            meta = pod["metadata"]
            if wanted_uid and wanted_uid != meta.get("uid"):
                raise errors.conflict("pods", info.name, "",
                                      f"Precondition failed: UID in precondition: {wanted_uid}, "
                                      f"UID in object meta: {meta.get('uid')}")
            if meta.get("deletionTimestamp"):
                raise errors.conflict("pods", info.name, "", "pod is being deleted")
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise errors.conflict("pods", info.name, "",
                                      f'pod {info.name} is already assigned to node '
                                      f'"{spec["nodeName"]}"')
            spec["nodeName"] = node
            status = pod.setdefault("status", {})
            conditions = [c for c in status.get("conditions") or []
                          if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True",
                               "lastProbeTime": None, "lastTransitionTime": rfc3339()})
            status["conditions"] = conditions

        await self.registry.mutate(res, info.namespace, info.name, bind, dry_run=opts.dry_run)
        return _created({"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Success", "code": 201})

    async def evict_pod(self, request: Request, info: RequestInfo, res: Resource) -> Response:
        if request.method != "POST":
            raise errors.method_not_allowed()
        body = request.decode_body(allow_empty=True) or {}
        options = body.get("deleteOptions") or {} if isinstance(body, dict) else {}
        await self.registry.delete(res, info.namespace, info.name, options,
                                   request.write_options())
        return _created({"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Success", "code": 201})

    # -- service accounts and namespaces -----------------------------------------------

    async def token_request(self, request: Request, info: RequestInfo,
                            res: Resource) -> Response:
        if request.method != "POST":
            raise errors.method_not_allowed()
        body = request.decode_body(allow_empty=True) or {}
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a TokenRequest object")
        spec = body.get("spec") or {}
        account = await self.registry.get(res, info.namespace, info.name)
        seconds = spec.get("expirationSeconds", 3600)
        if not isinstance(seconds, int) or not MIN_TOKEN_SECONDS <= seconds <= MAX_TOKEN_SECONDS:
            raise errors.invalid("TokenRequest", info.name, [errors.invalid_value(
                "spec.expirationSeconds", seconds,
                f"may not specify a duration less than {MIN_TOKEN_SECONDS} seconds")],
                "authentication.k8s.io")
        audiences = tuple(spec.get("audiences") or ()) or None
        bound = spec.get("boundObjectRef") or None
        pod = None
        if bound:
            if bound.get("kind") != "Pod":
                raise errors.invalid("TokenRequest", info.name, [errors.not_supported(
                    "spec.boundObjectRef.kind", bound.get("kind"), ["Pod"])],
                    "authentication.k8s.io")
            pod_res = self.table.lookup("", "v1", "pods")
            assert pod_res is not None
            bound_pod = await self.registry.get(pod_res, info.namespace, bound.get("name", ""))
            if bound.get("uid") and bound["uid"] != bound_pod["metadata"]["uid"]:
                raise errors.conflict("pods", bound.get("name", ""), "",
                                      "the UID in the bound object reference does not match")
            pod = (bound_pod["metadata"]["name"], bound_pod["metadata"]["uid"])
        kwargs: dict[str, Any] = {"namespace": info.namespace, "name": info.name,
                                  "uid": account["metadata"]["uid"],
                                  "expiration_seconds": seconds, "pod": pod}
        if audiences:
            kwargs["audiences"] = audiences
        token, expires = self.tokens.issue(**kwargs)
        out = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": info.name, "namespace": info.namespace,
                         "creationTimestamp": rfc3339()},
            "spec": {**spec, "expirationSeconds": seconds},
            "status": {"token": token,
                       "expirationTimestamp": rfc3339(datetime.fromtimestamp(expires, UTC))},
        }
        return _created(out)

    async def finalize_namespace(self, request: Request, info: RequestInfo,
                                 res: Resource) -> Response:
        if request.method != "PUT":
            raise errors.method_not_allowed()
        body = request.decode_body()
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a Namespace object")
        finalizers = (body.get("spec") or {}).get("finalizers") or []
        if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
            raise errors.bad_request("spec.finalizers must be a list of strings")

        def finalize(ns: dict[str, Any]) -> None:
            ns.setdefault("spec", {})["finalizers"] = finalizers
            if not finalizers:
                del ns["spec"]["finalizers"]

        result = await self.registry.mutate(res, None, info.name, finalize,
                                            dry_run=request.write_options().dry_run)
        return Response(200, orjson.dumps(result))


__all__ = ["SpecialHandlers", "WriteOptions"]
