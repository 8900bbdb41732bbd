"""The generic registry: one create/get/list/update/patch/delete path for every resource.

As in Kubernetes' `genericregistry.Store`, behaviour that differs per kind is looked up,
not branched on: defaulters and validators by (group, kind), schemas for field pruning
(the CRD's schema, or the built-in schema generated from the client models), and the
`Resource` declaration for scope, status and scale. The write path is:

    decode -> check kind/namespace -> prune unknown fields (fieldValidation) -> default ->
    metadata (uid, timestamps, generation) -> validate -> managedFields -> CAS write

A Service's cluster IP and node ports are claimed before validation and released if the
write fails, or once the Service is really removed (`serviceips.py`).

A resource served in a version other than its kind's storage version (autoscaling/v1
HorizontalPodAutoscalers, stored as v2) works on objects in its own version and is
converted as they are decoded and encoded (`conversion.py`).

Objects are stored as JSON without `metadata.resourceVersion`; the store's mod_revision
is the resourceVersion, set on every read. An update that changes nothing is not written
(no new resourceVersion), so applying the same manifest twice is a true no-op.
"""

from __future__ import annotations

import base64
import contextlib
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson

from ...machinery import errors
from ...machinery.apply import record_update, server_side_apply
from ...machinery.meta import generate_name, metadata, new_uid, now, rfc3339
from ...machinery.patch import json_patch, merge_patch, strategic_merge_patch
from ...machinery.quota import pod_qos_class
from ...machinery.selectors import FieldSelector, LabelSelector, selector_string_from_dict
from ...store import Compacted, KeyExists, KeyNotFound, KeyValue, RevisionMismatch, Store
from .. import schema as structural
from ..admission import AdmissionPlugin, AdmissionRequest
from ..crd import default_crd, validate_crd, validate_crd_update
from ..openapi import builtin_schema, model_for
from ..serviceips import Allocation, ServiceAddresses, prepare_service_update
from .builtin import CREATE_ON_UPDATE, RETURNS_DELETED_OBJECT
from .conversion import from_storage, to_storage
from .defaults import DEFAULTERS, job_prepare_for_create
from .resource import Resource
from .validation import (
    NAME_RULES,
    UPDATE_VALIDATORS,
    VALIDATORS,
    WARNINGS,
    validate_object_meta,
    validate_object_meta_update,
)

if TYPE_CHECKING:
    from ..rbac import UserInfo
    from ..webhooks import WebhookDispatcher

CRD_KEY = ("apiextensions.k8s.io", "CustomResourceDefinition")
SERVICE_KEY = ("", "Service")
CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def _crd_prepare_for_create(crd: dict[str, Any]) -> None:
    finalizers = crd["metadata"].setdefault("finalizers", [])
    if CRD_CLEANUP_FINALIZER not in finalizers:
        finalizers.append(CRD_CLEANUP_FINALIZER)


# The strategies, by (group, kind): the built-in kinds' plus the CRD kind's own.
_DEFAULTERS = {**DEFAULTERS, CRD_KEY: default_crd}
_VALIDATORS = {**VALIDATORS, CRD_KEY: validate_crd}
_UPDATE_VALIDATORS = {**UPDATE_VALIDATORS, CRD_KEY: validate_crd_update}
#: Run after uid and timestamps are set, before validation (PrepareForCreate).
_PREPARE_FOR_CREATE = {("batch", "Job"): job_prepare_for_create, CRD_KEY: _crd_prepare_for_create}

APPLY_PATCH = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)

#: Metadata fields a client cannot change after create.
_IMMUTABLE_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")
#: Metadata a status write may not change (ResetObjectMetaForStatus).
_STATUS_RESET_META = ("labels", "annotations", "finalizers", "ownerReferences", "generation")
_MAX_CAS_RETRIES = 16
_CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)


@dataclass
class WriteOptions:
    """Per-request write settings (query parameters) and what the write reports back."""

    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Warn"  # Strict | Warn | Ignore
    force: bool = False
    warnings: list[str] = field(default_factory=list)
    #: Who asks: what admission webhooks are told (userInfo); None for the server's own.
    user: UserInfo | None = None


@dataclass
class ListResult:
    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None


def decode(kv: KeyValue, res: Resource | None = None) -> dict[str, Any]:
    """A stored object as `res` serves it (converted if `res` is not its storage version)."""
    obj = orjson.loads(kv.value)
    obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
    if res is not None and res.custom:
        obj["apiVersion"] = res.group_version  # conversion strategy None: same object
    elif res is not None and res.storage_version:
        obj = from_storage(res, obj)
    return obj


def encode(obj: dict[str, Any], res: Resource | None = None) -> bytes:
    """What the datastore keeps of `obj` (written through `res`): its storage version,
    without resourceVersion."""
    if res is not None and res.storage_version:
        obj = to_storage(res, obj)
    meta = obj["metadata"]
    rv = meta.pop("resourceVersion", None)
    try:
        return orjson.dumps(obj)
    finally:
        if rv is not None:
            meta["resourceVersion"] = rv


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything that bumps generation: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def encode_continue(revision: int, last_key: str) -> str:
    token = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key})
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def decode_continue(token: str, prefix: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        revision, start = int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise errors.bad_request("continue key is not valid: could not decode") from None
    if not start.startswith(prefix):
        raise errors.bad_request("continue key is not valid: it is for another list")
    return revision, start


class GenericRegistry:
    """CRUD over the store for any `Resource`, with the per-kind strategies applied."""

    def __init__(self, store: Store, admission: Sequence[AdmissionPlugin] = (), *,
                 service_addresses: ServiceAddresses | None = None) -> None:
        self.store = store
        self.admission = tuple(admission)
        #: The dynamic admission webhooks (webhooks.py), once the server has wired them.
        self.webhooks: WebhookDispatcher | None = None
        #: Services' cluster IPs and node ports (the default ranges unless configured).
        self.service_addresses = service_addresses or ServiceAddresses(store)

    # -- reads -------------------------------------------------------------------------

    async def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        kv = await self.store.get(res.key(namespace, name))
        if kv is None:
            raise errors.not_found(res.plural, name, res.group)
        return decode(kv, res)

    async def list(
        self,
        res: Resource,
        namespace: str | None,
        *,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
        limit: int = 0,
        continue_token: str = "",
    ) -> ListResult:
        prefix = res.prefix(namespace)
        start, revision = "", 0
        if continue_token:
            revision, start = decode_continue(continue_token, prefix)
        name = fields.exact("metadata.name") if fields else None
        if name is not None and namespace is not None or (name and not res.namespaced):
            kv = await self.store.get(res.key(namespace, name))
            candidates = [kv] if kv else []
            items = [decode(kv, res) for kv in candidates]
            items = [o for o in items if self.matches(res, o, labels, fields)]
            return ListResult(items, str(self.store.revision))
        items: list[dict[str, Any]] = []
        while True:
            want = limit - len(items) if limit else 0
            try:
                page = await self.store.range(
                    prefix, start_after=start, limit=max(want, 0), revision=revision
                )
            except Compacted:
                raise errors.gone(_CONTINUE_TOO_OLD) from None
            revision = page.revision
            for kv in page.kvs:
                obj = decode(kv, res)
                if self.matches(res, obj, labels, fields):
                    items.append(obj)
            if not page.more:
                return ListResult(items, str(revision))
            start = page.kvs[-1].key
            if limit and len(items) >= limit:
                remaining = None
                if not labels and not fields:
                    remaining = await self.store.count(prefix, start_after=start) or None
                return ListResult(items, str(revision), encode_continue(revision, start), remaining)

    @staticmethod
    def matches(
        res: Resource,
        obj: dict[str, Any],
        labels: LabelSelector | None,
        fields: FieldSelector | None,
    ) -> bool:
        meta = obj.get("metadata") or {}
        if labels is not None and not labels.matches(meta.get("labels") or {}):
            return False
        if fields is not None:
            values = {"metadata.name": meta.get("name", ""),
                      "metadata.namespace": meta.get("namespace", "")}
            for fname in fields.fields:
                getter = res.field_selectors.get(fname)
                if getter is not None:
                    values[fname] = getter(obj)
            return fields.matches(values)
        return True

    def check_field_selector(self, res: Resource, fields: FieldSelector) -> None:
        for fname in fields.fields:
            if fname not in ("metadata.name", "metadata.namespace") and (
                fname not in res.field_selectors
            ):
                raise errors.bad_request(f'field label not supported: {fname}')

    # -- create ------------------------------------------------------------------------

    async def create(
        self, res: Resource, namespace: str | None, obj: Any, opts: WriteOptions
    ) -> dict[str, Any]:
        obj = self._check_body(res, obj, namespace)
        meta = metadata(obj)
        if meta.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        self._prune(res, obj, opts)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generate_name(str(meta["generateName"]))
        meta.pop("managedFields", None)
        allocation = await self._prepare_new(res, namespace, obj, opts)
        self._warn(res, obj, opts)
        try:
            record_update(None, obj, manager=opts.field_manager or "unknown", now=rfc3339(),
                          model=model_for(res.group, res.version, res.kind))
            return await self._store_create(res, obj, opts)
        except BaseException:
            if allocation is not None:
                await allocation.revert()
            raise

    async def _prepare_new(self, res: Resource, namespace: str | None, obj: dict,
                           opts: WriteOptions) -> Allocation | None:
        """Everything a create does between decoding and storing (PrepareForCreate + Validate).

        A Service's addresses are claimed here, before validation as kube-apiserver's
        BeginCreate does; the caller reverts the returned allocation if the store write
        fails, this method if anything before it does."""
        meta = obj["metadata"]
        await self._check_namespace(res, namespace)
        self._default(res, obj)
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = rfc3339()
        if "spec" in obj or res.custom:
            meta["generation"] = 1
        self._reset_status_on_create(res, obj)
        prepare = _PREPARE_FOR_CREATE.get((res.group, res.kind))
        if prepare is not None:
            prepare(obj)
        allocation = None
        if (res.group, res.kind) == SERVICE_KEY:
            allocation = await self.service_addresses.allocate_create(obj,
                                                                      dry_run=opts.dry_run)
        try:
            for plugin in self.admission:
                await plugin.mutate(self, res, obj, None)
            review = self._admission_request(res, "CREATE", obj, None, opts)
            await self._mutating_webhooks(review, obj, opts)
            self._validate(res, obj, None)
            if (res.group, res.kind) == ("", "Pod"):
                # From the resources admission may have defaulted, once validation has
                # checked that every quantity parses.
                obj["status"]["qosClass"] = pod_qos_class(obj)
            await self._validating_webhooks(review, opts)
            for plugin in self.admission:
                await plugin.validate(self, res, obj, None, dry_run=opts.dry_run)
        except BaseException:
            if allocation is not None:
                await allocation.revert()
            raise
        return allocation

    async def _store_create(self, res: Resource, obj: dict[str, Any], opts: WriteOptions) -> dict:
        meta = obj["metadata"]
        if opts.dry_run:
            if await self.store.get(res.key(meta.get("namespace"), meta["name"])) is not None:
                raise errors.already_exists(res.plural, meta["name"], res.group)
            return obj
        try:
            kv = await self.store.create(res.key(meta.get("namespace"), meta["name"]),
                                         encode(obj, res))
        except KeyExists:
            raise errors.already_exists(res.plural, meta["name"], res.group) from None
        meta["resourceVersion"] = str(kv.mod_revision)
        return _as_read(res, obj)

    def _check_body(self, res: Resource, obj: Any, namespace: str | None) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise errors.bad_request(f"the body of the request must be a {res.kind} object")
        api_version = obj.get("apiVersion")
        if api_version and api_version != res.group_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({res.group_version})"
            )
        kind = obj.get("kind")
        if kind and kind != res.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({res.kind})"
            )
        obj["apiVersion"], obj["kind"] = res.group_version, res.kind
        meta = metadata(obj)
        if res.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            if namespace:
                meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return obj

    async def _check_namespace(self, res: Resource, namespace: str | None) -> None:
        """NamespaceLifecycle admission: no new objects in missing or terminating namespaces."""
        if not res.namespaced or not namespace:
            return
        kv = await self.store.get(f"/registry/core/namespaces/{namespace}")
        if kv is None:
            raise errors.not_found("namespaces", namespace)
        ns = orjson.loads(kv.value)
        if ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get(
            "phase"
        ) == "Terminating":
            raise errors.APIError(
                403,
                "Forbidden",
                f'{res.plural} is forbidden: unable to create new content in namespace '
                f'{namespace} because it is being terminated',
                kind=res.plural,
            )

    def _schema(self, res: Resource) -> Any:
        if res.custom:
            return res.schema
        return builtin_schema(res.group, res.version, res.kind)

    def _prune(self, res: Resource, obj: dict[str, Any], opts: WriteOptions) -> None:
        schema = self._schema(res)
        if schema is None:
            return
        unknown = structural.prune(obj, schema)
        if not unknown or opts.field_validation == "Ignore":
            return
        if opts.field_validation == "Strict":
            listed = ", ".join(f'unknown field "{path}"' for path in unknown)
            raise errors.bad_request(f"strict decoding error: {listed}")
        opts.warnings.extend(f'unknown field "{path}"' for path in unknown)

    def _default(self, res: Resource, obj: dict[str, Any]) -> None:
        if res.custom:
            if res.schema:
                structural.apply_defaults(obj, res.schema)
            return
        defaulter = _DEFAULTERS.get((res.group, res.kind))
        if defaulter is not None:
            defaulter(obj)

    @staticmethod
    def _reset_status_on_create(res: Resource, obj: dict[str, Any]) -> None:
        if not res.has_status or res.plural in ("nodes", "namespaces"):
            return
        if res.plural == "pods":
            obj["status"] = {"phase": "Pending"}
        elif res.plural == "persistentvolumeclaims":
            obj["status"] = {"phase": "Pending"}
        elif res.plural == "persistentvolumes":
            obj["status"] = {"phase": "Pending"}
        else:
            obj.pop("status", None)
            if not res.custom:
                obj["status"] = {}

    def _validate(self, res: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        key = (res.group, res.kind)
        causes = validate_object_meta(
            obj, namespaced=res.namespaced, name_rule=NAME_RULES.get(key, "subdomain")
        )
        if old is not None:
            causes += validate_object_meta_update(obj, old)
        if res.custom:
            if res.schema:
                causes += structural.validate(obj, res.schema)
        else:
            validator = _VALIDATORS.get(key)
            if validator is not None:
                causes += validator(obj)
            if old is not None:
                update_validator = _UPDATE_VALIDATORS.get(key)
                if update_validator is not None:
                    causes += update_validator(obj, old)
        if causes:
            name = (obj.get("metadata") or {}).get("name") or ""
            raise errors.invalid(res.kind, name, causes, res.group)

    def _admission_request(self, res: Resource, operation: str, obj: dict[str, Any] | None,
                           old: dict[str, Any] | None, opts: WriteOptions,
                           subresource: str = "", *,
                           options: dict[str, Any] | None = None) -> AdmissionRequest | None:
        """What the admission webhooks are asked about this write; None (at the cost of two
        dict lookups) when no webhook could match the resource."""
        hooks = self.webhooks
        if hooks is None or not (hooks.candidates(True, res.group, res.plural)
                                 or hooks.candidates(False, res.group, res.plural)):
            return None
        meta = (obj if obj is not None else old or {}).get("metadata") or {}
        kind = None
        if subresource == "scale" and obj is not None and old is not None:
            obj, old, kind = self.to_scale(res, obj), self.to_scale(res, old), (
                "autoscaling", "v1", "Scale")
        option_kinds = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions",
                        "DELETE": "DeleteOptions"}
        sent = {**(options or {}), "kind": option_kinds[operation],
                "apiVersion": "meta.k8s.io/v1"}
        if opts.dry_run:
            sent["dryRun"] = ["All"]
        if opts.field_manager and operation != "DELETE":
            sent["fieldManager"] = opts.field_manager
        namespace = meta.get("namespace", "")
        if (res.group, res.plural) == ("", "namespaces"):
            namespace = meta.get("name", "")  # as upstream's request attributes name it
        return AdmissionRequest(resource=res, operation=operation, namespace=namespace,
                                name=meta.get("name", ""), obj=obj, old=old,
                                subresource=subresource, dry_run=opts.dry_run, options=sent,
                                user=opts.user, kind=kind)

    async def _mutating_webhooks(self, review: AdmissionRequest | None,
                                 obj: dict[str, Any] | None, opts: WriteOptions) -> None:
        """Mutating admission webhooks, which patch `review.obj`: `obj` itself, read as a
        request body is (unknown fields dropped, defaults filled in again), or for the
        scale subresource the Scale, whose replicas are then written back to `obj`."""
        if review is None or self.webhooks is None:
            return
        if not await self.webhooks.mutate(review, opts) or obj is None or review.obj is None:
            return
        res = review.resource
        if review.kind is not None and res.scale_paths is not None:
            _set_path(obj, res.scale_paths[0], (review.obj.get("spec") or {}).get("replicas"))
            return
        schema = self._schema(res)
        if schema is not None:
            structural.prune(obj, schema)
        self._default(res, obj)

    async def _validating_webhooks(self, review: AdmissionRequest | None,
                                   opts: WriteOptions) -> None:
        if review is not None and self.webhooks is not None:
            await self.webhooks.validate(review, opts)

    @staticmethod
    def _warn(res: Resource, obj: dict[str, Any], opts: WriteOptions) -> None:
        """WarningsOnCreate/WarningsOnUpdate: the kind's warnings, sent as Warning headers."""
        warn = None if res.custom else WARNINGS.get((res.group, res.kind))
        if warn is not None:
            opts.warnings.extend(warn(obj))

    # -- update and patch --------------------------------------------------------------

    async def update(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        obj: Any,
        opts: WriteOptions,
        *,
        subresource: str = "",
    ) -> tuple[dict[str, Any], bool]:
        """PUT. Returns (object, created)."""
        obj = self._check_body(res, obj, namespace)
        body_name = obj["metadata"].get("name")
        if body_name and body_name != name:
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        obj["metadata"]["name"] = name
        wanted_rv = str(obj["metadata"].get("resourceVersion") or "")
        for _ in range(_MAX_CAS_RETRIES):
            kv = await self.store.get(res.key(namespace, name))
            if kv is None:
                if (res.group, res.kind) in CREATE_ON_UPDATE and not subresource:
                    obj["metadata"].pop("resourceVersion", None)
                    return await self.create(res, namespace, obj, opts), True
                raise errors.not_found(res.plural, name, res.group)
            if wanted_rv and wanted_rv != str(kv.mod_revision):
                raise errors.stale_conflict(res.plural, name, res.group)
            old = decode(kv, res)
            new = copy.deepcopy(obj)
            try:
                return await self._write_update(res, kv, old, new, opts, subresource), False
            except RevisionMismatch:
                if wanted_rv:
                    raise errors.stale_conflict(res.plural, name, res.group) from None
        raise errors.stale_conflict(res.plural, name, res.group)

    async def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch_type: str,
        body: Any,
        opts: WriteOptions,
        *,
        subresource: str = "",
    ) -> tuple[dict[str, Any], bool]:
        """PATCH with any of the four patch types. Returns (object, created)."""
        if patch_type == STRATEGIC_PATCH and res.custom:
            raise errors.APIError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}",
            )
        for _ in range(_MAX_CAS_RETRIES):
            kv = await self.store.get(res.key(namespace, name))
            if kv is None:
                if patch_type == APPLY_PATCH and not subresource:
                    return await self._apply_create(res, namespace, name, body, opts), True
                raise errors.not_found(res.plural, name, res.group)
            old = decode(kv, res)
            patched = self._apply_patch(res, old, patch_type, body, opts)
            wanted_rv = str((patched.get("metadata") or {}).get("resourceVersion") or "")
            if wanted_rv and wanted_rv != str(kv.mod_revision):
                raise errors.stale_conflict(res.plural, name, res.group)
            patched = self._check_body(res, patched, namespace)
            if patched["metadata"].get("name") != name:
                raise errors.bad_request("metadata.name: the name of a patched object cannot change")
            try:
                return await self._write_update(res, kv, old, patched, opts, subresource), False
            except RevisionMismatch:
                if wanted_rv:
                    raise errors.stale_conflict(res.plural, name, res.group) from None
        raise errors.stale_conflict(res.plural, name, res.group)

    def _apply_patch(
        self, res: Resource, old: dict[str, Any], patch_type: str, body: Any, opts: WriteOptions
    ) -> dict[str, Any]:
        doc = copy.deepcopy(old)
        if patch_type == JSON_PATCH:
            return json_patch(doc, body)
        if patch_type == MERGE_PATCH:
            return merge_patch(doc, body)
        if patch_type == STRATEGIC_PATCH:
            model = model_for(res.group, res.version, res.kind)
            return strategic_merge_patch(doc, body, model) if model else merge_patch(doc, body)
        if patch_type == APPLY_PATCH:
            applied = self._check_body(res, body, old["metadata"].get("namespace"))
            self._prune(res, applied, opts)
            return server_side_apply(
                doc,
                applied,
                manager=self._apply_manager(opts),
                force=opts.force,
                model=model_for(res.group, res.version, res.kind),
                now=rfc3339(),
            )
        raise errors.unsupported_media_type(patch_type)

    @staticmethod
    def _apply_manager(opts: WriteOptions) -> str:
        if not opts.field_manager:
            raise errors.bad_request(
                "PATCH requests with apply content type (application/apply-patch+yaml) "
                "require fieldManager to be set"
            )
        return opts.field_manager

    async def _apply_create(
        self, res: Resource, namespace: str | None, name: str, body: Any, opts: WriteOptions
    ) -> dict[str, Any]:
        obj = self._check_body(res, body, namespace)
        manager = self._apply_manager(opts)
        if obj["metadata"].get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({obj['metadata'].get('name')}) does not match the "
                f"name on the URL ({name})"
            )
        obj["metadata"]["name"] = name
        self._prune(res, obj, opts)
        applied = server_side_apply(
            None, obj, manager=manager, force=opts.force,
            model=model_for(res.group, res.version, res.kind), now=rfc3339(),
        )
        allocation = await self._prepare_new(res, namespace, applied, opts)
        self._warn(res, applied, opts)
        try:
            return await self._store_create(res, applied, opts)
        except BaseException:
            if allocation is not None:
                await allocation.revert()
            raise

    async def _write_update(
        self,
        res: Resource,
        kv: KeyValue,
        old: dict[str, Any],
        new: dict[str, Any],
        opts: WriteOptions,
        subresource: str,
    ) -> dict[str, Any]:
        old_meta = old["metadata"]
        new_meta = metadata(new)
        uid = new_meta.get("uid")
        if uid and uid != old_meta.get("uid"):
            raise errors.conflict(
                res.plural, old_meta["name"], res.group,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                f"{old_meta.get('uid')}",
            )
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            new_meta = new["metadata"]
        else:
            if subresource == "":
                self._prune(res, new, opts)
            if res.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            for key in _IMMUTABLE_META:
                if key in old_meta:
                    new_meta[key] = old_meta[key]
                else:
                    new_meta.pop(key, None)
            new_meta["generation"] = old_meta.get("generation")
            if new_meta["generation"] is None:
                del new_meta["generation"]
            if (res.group, res.kind) == SERVICE_KEY:
                prepare_service_update(new, old)
            self._default(res, new)
            if subresource == "":
                self._warn(res, new, opts)
            if _spec_of(new) != _spec_of(old) and "generation" in new_meta:
                new_meta["generation"] += 1
        new_meta["name"] = old_meta["name"]
        if "namespace" in old_meta:
            new_meta["namespace"] = old_meta["namespace"]
        new_meta["resourceVersion"] = old_meta["resourceVersion"]
        if subresource == "status":
            for key in _STATUS_RESET_META:
                if key in old_meta:
                    new_meta[key] = old_meta[key]
        if (res.group, res.kind) != SERVICE_KEY or subresource == "status":
            return await self._admit_and_write(res, kv, old, new, opts, subresource)
        # A Service's new addresses are claimed before validation (BeginUpdate); those it
        # gives up are released only once the update is stored.
        allocation = await self.service_addresses.allocate_update(new, old, dry_run=opts.dry_run)
        try:
            written = await self._admit_and_write(res, kv, old, new, opts, subresource)
        except BaseException:
            await allocation.revert()
            raise
        await allocation.commit()
        return written

    async def _admit_and_write(self, res: Resource, kv: KeyValue, old: dict[str, Any],
                               new: dict[str, Any], opts: WriteOptions,
                               subresource: str = "") -> dict[str, Any]:
        """The end of an update: admission, validation, managedFields, the CAS write."""
        old_meta, new_meta = old["metadata"], new["metadata"]
        for plugin in self.admission:
            await plugin.mutate(self, res, new, old)
        review = self._admission_request(res, "UPDATE", new, old, opts, subresource)
        await self._mutating_webhooks(review, new, opts)
        self._validate(res, new, old)
        await self._validating_webhooks(review, opts)
        for plugin in self.admission:
            await plugin.validate(self, res, new, old, dry_run=opts.dry_run)
        new_meta["managedFields"] = old_meta.get("managedFields")
        if new_meta["managedFields"] is None:
            del new_meta["managedFields"]
        if new == old:
            return old  # a no-op: nothing written, resourceVersion unchanged
        if opts.field_manager or not new_meta.get("managedFields"):
            record_update(old, new, manager=opts.field_manager or "unknown", now=rfc3339(),
                          model=model_for(res.group, res.version, res.kind))
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers") and (
            not _namespace_spec_finalizers(res, new)
        ):
            return await self._remove(res, kv, new, opts)
        if opts.dry_run:
            return new
        updated = await self.store.update(kv.key, encode(new, res),
                                          expected_revision=kv.mod_revision)
        new_meta["resourceVersion"] = str(updated.mod_revision)
        return _as_read(res, new)

    async def mutate(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        change: Callable[[dict[str, Any]], None],
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Apply `change` to the stored object and write it back, retrying on conflict.

        For the server's own writes that no client strategy governs (binding a pod,
        CRD status, namespace finalization): no defaulting, validation or pruning.
        """
        for _ in range(_MAX_CAS_RETRIES):
            kv = await self.store.get(res.key(namespace, name))
            if kv is None:
                raise errors.not_found(res.plural, name, res.group)
            old = decode(kv, res)
            new = copy.deepcopy(old)
            change(new)
            if new == old:
                return old
            meta = new["metadata"]
            if meta.get("deletionTimestamp") and not meta.get("finalizers") and (
                not _namespace_spec_finalizers(res, new)
            ):
                return await self._remove(res, kv, new, WriteOptions(dry_run=dry_run))
            if dry_run:
                return new
            try:
                updated = await self.store.update(kv.key, encode(new, res),
                                                  expected_revision=kv.mod_revision)
            except RevisionMismatch:
                continue
            meta["resourceVersion"] = str(updated.mod_revision)
            return new
        raise errors.stale_conflict(res.plural, name, res.group)

    # -- scale subresource -------------------------------------------------------------

    def to_scale(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        assert res.scale_paths is not None
        spec_path, status_path, selector_path = res.scale_paths
        meta = obj["metadata"]
        selector = _get_path(obj, selector_path)
        if isinstance(selector, dict):
            selector = selector_string_from_dict(selector)
        status: dict[str, Any] = {"replicas": _get_path(obj, status_path) or 0}
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                               "creationTimestamp") if k in meta},
            "spec": {"replicas": _get_path(obj, spec_path) or 0},
            "status": status,
        }

    async def update_scale(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        scale_of: Any,
        opts: WriteOptions,
    ) -> dict[str, Any]:
        """Write a Scale (computed by `scale_of(current_scale)`) back into the object."""
        assert res.scale_paths is not None
        for _ in range(_MAX_CAS_RETRIES):
            kv = await self.store.get(res.key(namespace, name))
            if kv is None:
                raise errors.not_found(res.plural, name, res.group)
            old = decode(kv, res)
            scale = scale_of(self.to_scale(res, old))
            if not isinstance(scale, dict) or not isinstance(scale.get("spec"), dict):
                raise errors.bad_request("the body of the request must be a Scale object")
            wanted_rv = str((scale.get("metadata") or {}).get("resourceVersion") or "")
            if wanted_rv and wanted_rv != str(kv.mod_revision):
                raise errors.stale_conflict(res.plural, name, res.group)
            replicas = scale["spec"].get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid(
                    "Scale", name,
                    [errors.invalid_value("spec.replicas", replicas,
                                          "must be greater than or equal to 0")],
                    "autoscaling",
                )
            new = copy.deepcopy(old)
            _set_path(new, res.scale_paths[0], replicas)
            try:
                written = await self._write_update(res, kv, old, new, opts, "scale")
            except RevisionMismatch:
                if wanted_rv:
                    raise errors.stale_conflict(res.plural, name, res.group) from None
                continue
            return self.to_scale(res, written)
        raise errors.stale_conflict(res.plural, name, res.group)

    # -- delete ------------------------------------------------------------------------

    async def delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        options: dict[str, Any],
        opts: WriteOptions,
    ) -> tuple[dict[str, Any], bool]:
        """DELETE. Returns (object or Status, deleted_now)."""
        for _ in range(_MAX_CAS_RETRIES):
            kv = await self.store.get(res.key(namespace, name))
            if kv is None:
                raise errors.not_found(res.plural, name, res.group)
            obj = decode(kv, res)
            self._check_preconditions(res, obj, options)
            review = self._admission_request(res, "DELETE", None, obj, opts, options=options)
            await self._mutating_webhooks(review, None, opts)
            await self._validating_webhooks(review, opts)
            try:
                return await self._delete_one(res, kv, obj, options, opts)
            except RevisionMismatch:
                continue
        raise errors.stale_conflict(res.plural, name, res.group)

    @staticmethod
    def _check_preconditions(res: Resource, obj: dict[str, Any], options: dict[str, Any]) -> None:
        pre = options.get("preconditions") or {}
        meta = obj["metadata"]
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(
                res.plural, meta["name"], res.group,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                f"{meta.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise errors.conflict(
                res.plural, meta["name"], res.group,
                f"Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                f"{meta.get('resourceVersion')}",
            )

    async def _delete_one(
        self,
        res: Resource,
        kv: KeyValue,
        obj: dict[str, Any],
        options: dict[str, Any],
        opts: WriteOptions,
    ) -> tuple[dict[str, Any], bool]:
        meta = obj["metadata"]
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy not in (None, "Orphan", "Foreground", "Background"):
            raise errors.invalid(
                "DeleteOptions", "",
                [errors.not_supported("propagationPolicy", policy,
                                      ["Foreground", "Background", "Orphan", "nil"])],
            )
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        if policy in ("Foreground", "Background"):
            finalizers = [f for f in finalizers if f != "orphan" or policy != "Background"]
        grace = self._grace_period(res, obj, options)
        pending = bool(finalizers) or grace > 0 or _namespace_spec_finalizers(res, obj)
        if not pending:
            deleted = await self._remove(res, kv, obj, opts, answer_with_status=True)
            return deleted, True
        new = copy.deepcopy(obj)
        new_meta = new["metadata"]
        if not new_meta.get("deletionTimestamp"):
            new_meta["deletionTimestamp"] = rfc3339(now() + timedelta(seconds=grace))
            new_meta["deletionGracePeriodSeconds"] = grace
        elif grace < (new_meta.get("deletionGracePeriodSeconds") or 0):
            new_meta["deletionTimestamp"] = rfc3339(now() + timedelta(seconds=grace))
            new_meta["deletionGracePeriodSeconds"] = grace
        if finalizers:
            new_meta["finalizers"] = finalizers
        if res.plural == "namespaces":
            new.setdefault("status", {})["phase"] = "Terminating"
        if new == obj:
            return obj, False
        if opts.dry_run:
            return new, False
        updated = await self.store.update(kv.key, encode(new, res), expected_revision=kv.mod_revision)
        new_meta["resourceVersion"] = str(updated.mod_revision)
        return new, False

    @staticmethod
    def _grace_period(res: Resource, obj: dict[str, Any], options: dict[str, Any]) -> int:
        """Only pods bound to a node are deleted gracefully (their kubelet finishes the job)."""
        if res.plural != "pods" or res.group:
            return 0
        spec = obj.get("spec") or {}
        if not spec.get("nodeName"):
            return 0
        if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return 0
        requested = options.get("gracePeriodSeconds")
        if requested is None:
            requested = spec.get("terminationGracePeriodSeconds", 30)
        if not isinstance(requested, int) or isinstance(requested, bool):
            raise errors.bad_request("gracePeriodSeconds must be an integer")
        return max(requested, 0)

    async def _remove(
        self, res: Resource, kv: KeyValue, obj: dict[str, Any], opts: WriteOptions, *,
        answer_with_status: bool = False,
    ) -> dict[str, Any]:
        """Delete the stored object now. A DELETE of most kinds answers with a Status
        (ReturnDeletedObject is false for them); an update that released the last
        finalizer answers with the object, as a real server does."""
        if not opts.dry_run:
            try:
                gone = await self.store.delete(kv.key, expected_revision=kv.mod_revision)
            except KeyNotFound:
                raise errors.not_found(res.plural, obj["metadata"]["name"], res.group) from None
            obj["metadata"]["resourceVersion"] = str(gone.mod_revision)
            if (res.group, res.kind) == SERVICE_KEY:
                # What was stored, and what the update that removed it may have claimed.
                await self.service_addresses.release_service(decode(kv, res))
                await self.service_addresses.release_service(obj)
        if not answer_with_status or res.custom or (res.group, res.kind) in \
                RETURNS_DELETED_OBJECT:
            return obj
        meta = obj["metadata"]
        details = {"name": meta["name"], "kind": res.plural, "uid": meta.get("uid")}
        if res.group:
            details["group"] = res.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}

    async def purge(self, res: Resource, namespace: str | None, name: str) -> None:
        """Remove an object now, whatever its finalizers (CRD cleanup)."""
        kv = await self.store.get(res.key(namespace, name))
        if kv is not None:
            with contextlib.suppress(errors.APIError, RevisionMismatch):
                await self._remove(res, kv, decode(kv, res), WriteOptions())

    async def delete_collection(
        self,
        res: Resource,
        namespace: str | None,
        *,
        labels: LabelSelector | None,
        fields: FieldSelector | None,
        options: dict[str, Any],
        opts: WriteOptions,
    ) -> list[dict[str, Any]]:
        listed = await self.list(res, namespace, labels=labels, fields=fields)
        deleted = []
        for obj in listed.items:
            meta = obj["metadata"]
            try:
                result, _ = await self.delete(res, meta.get("namespace"), meta["name"], options,
                                              opts)
            except errors.APIError as err:
                if err.code == 404:
                    continue
                raise
            deleted.append(result)
        return deleted


def _as_read(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """A written object as a read of it through `res` returns it: for a version other than
    the storage one, converted there and back (a v1 HorizontalPodAutoscaler gets its
    implied CPU target and its annotations)."""
    if not res.storage_version:
        return obj
    return from_storage(res, to_storage(res, obj))


def _namespace_spec_finalizers(res: Resource, obj: dict[str, Any]) -> bool:
    return res.plural == "namespaces" and not res.group and bool(
        (obj.get("spec") or {}).get("finalizers")
    )


def _get_path(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.lstrip(".").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.lstrip(".").split(".")
    target = obj
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value
