"""THE reconcile loop, instantiated once per enabled device kind.

Level-triggered: given a resource name, read the resource, its DaemonSets and their pods from
the informer caches, render the whole desired DaemonSet, make the cluster match it, and write
the status derived from what was observed. It never branches on event types, never writes a
resource's spec, and makes no write request when nothing changed.

Ownership is by UID: the DaemonSet named ``intel-<dev>-plugin-<cr>`` controlled by the
resource is its DaemonSet; another DaemonSet it controls (e.g. a pre-0.29 unsuffixed one) is
adopted in place when it is the only one, and deleted as a duplicate otherwise. The DaemonSet
of a deleted resource (its owner is gone, or a resource of the same kind and name has another
UID: garbage the collector has not reached yet) is deleted at once. Any other DaemonSet of the
same name is never touched: the resource reports a ``Degraded/NameConflict`` condition.

A spec the validating webhook would refuse (``reconcile.validation``: stored while its kind's
webhook was not registered) is not rendered: ``Degraded/InvalidSpec`` with the webhook's
message; no DaemonSet is created from it, and an existing one is left as it is.

A CRD older than the operator (the reference's, which Helm and OLM leave in place) drops
``status.observedGeneration`` and ``status.conditions`` from every status patch. The first patch
that comes back without them is reported once per kind (a warning and an ``OutdatedCRD``
Event naming the fix); from then on they are left out of the comparison, so an unchanged
status is not patched again. Each status patch still carries them, and one patch per
``SCHEMA_RECHECK`` does even when nothing changed, so an upgraded CRD is noticed.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from deviceplugin_operator import devices, settings
from deviceplugin_operator.api import plugin
from deviceplugin_operator.controller import cache, events, informer
from deviceplugin_operator.kube import client, errors, objects, resources
from deviceplugin_operator.reconcile import daemonset, drift, images, status, validation

log = logging.getLogger(__name__)

FIELD_MANAGER = "intel-deviceplugin-operator"
NAME_CONFLICT_RETRY = 30.0
"""Seconds before a blocked resource looks again (the foreign DaemonSet may go away)."""
MISSING_CONFIG_MAP_RETRY = 15.0
"""Seconds before a resource whose provisioning ConfigMap is missing looks again."""
SCHEMA_RECHECK = datetime.timedelta(seconds=600)
"""While the CRD drops status fields, how often one status patch of the kind carries them
anyway (the periodic resync's period): how an upgraded CRD is noticed when no status changes."""
CRD_FIX = "kubectl apply --server-side -f deployments/operator/crd/bases"
STATUS_INTERVAL = 0.05
"""Seconds between two status writes of one resource. A DaemonSet write is followed by a
burst of its status changes (the DaemonSet controller, then each plugin pod: pending,
running, ready), each a different resource status for a few milliseconds: 6 status writes
per rolled-out update and 5 per create before this (the reference writes 2.7 and 3.2), each
taking API server and operator time from the next change. A write due within the interval
is made at its end, with whatever the status is then."""
PROGRESS_INTERVAL = 1.0
"""Seconds between two status writes of one resource that only count (desired and ready
pods, node names, devices, the conditions' messages): while plugin pods come up one after
another, every pod scheduled, started or ready was a write of the whole resource: 12 per
resource of 10 pods at 100 nodes x 80 resources, 6.5 with this (the reference: 14.5). A write
that changes a condition's status or reason, ``observedGeneration`` or the controlled DaemonSet
is held for ``STATUS_INTERVAL`` only."""
URGENT_CONDITIONS = frozenset({status.READY, status.DEGRADED})
"""Conditions whose turning True is written at once, interval or not: what ``kubectl wait``
and alerts wait for (the DaemonSet has become ready; something needs a person)."""


POD_OWNER = "owner-uid"
"""Index of the pod cache: the UID of the DaemonSet that controls the pod."""
POD_NODE = "node"
"""Index of the pod cache: the node the pod is bound to."""


def pod_owner_uid(pod: objects.JsonObject) -> list[str]:
    owner = objects.controller_owner(pod)
    return [str(owner["uid"])] if owner and owner.get("kind") == "DaemonSet" else []


def pod_node(pod: objects.JsonObject) -> list[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return [str(node)] if node else []


DAEMONSET_INDEXERS = {cache.CONTROLLER_UID: cache.by_controller_uid}
"""What a reconcile finds its DaemonSets by: the UID of the controlling resource."""

POD_INDEXERS = {POD_OWNER: pod_owner_uid, POD_NODE: pod_node}
"""What a reconcile looks pods up by: never a walk over every cached pod, which made each
reconcile cost O(pods) and convergence O(pods²) with thousands of plugin pods."""


@dataclasses.dataclass(frozen=True)
class Caches:
    """The informers a reconciler reads: its kind's resources, DaemonSets and plugin pods,
    the latter two with ``DAEMONSET_INDEXERS`` and ``POD_INDEXERS``, and the nodes (each
    kept as ``status.node_essentials``: what they advertise of the Intel domains)."""

    plugins: informer.Informer
    daemonsets: informer.Informer
    pods: informer.Informer
    nodes: informer.Informer


class Reconciler:
    """Reconciles resources of one ``DeviceKind`` into DaemonSets."""

    def __init__(
        self,
        kind: devices.DeviceKind[Any],
        config: settings.Settings,
        kube: client.KubeClient,
        caches: Caches,
        *,
        recorder: events.Recorder,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        allowed_registries: Sequence[str] = (),
        devices_grace: datetime.timedelta = status.DEVICES_GRACE,
        status_interval: float = STATUS_INTERVAL,
        progress_interval: float = PROGRESS_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.kind = kind
        self.config = config
        self.kube = kube
        self.caches = caches
        self.recorder = recorder
        self.clock = clock
        self.allowed_registries = tuple(allowed_registries)
        """The validating webhook's registry allow-list (empty: any registry)."""
        self.devices_grace = devices_grace
        """How long a ready plugin may advertise no device before ``DevicesAdvertised``
        reports its node."""
        self.status_interval = status_interval
        """Seconds between two status writes of one resource (``STATUS_INTERVAL``)."""
        self.progress_interval = progress_interval
        """Seconds between two status writes of one resource that only count
        (``PROGRESS_INTERVAL``)."""
        self.monotonic = monotonic
        self._tracked: dict[str, _Tracked] = {}
        """What the reconciles of each resource keep for the next one (``_Tracked``):
        forgotten at once when the resource is gone."""
        self.nodes_unreadable: str | None = None
        """Why nodes cannot be read (set before the workers start, e.g. RBAC without them):
        statuses then carry no devices and ``DevicesAdvertised`` is Unknown."""
        self.nodes_pending = False
        """Whether the workers run before the node cache's first list arrived (the manager
        sets it): a status that shows plugin pods waits for it, as their nodes' devices are
        not known yet (the manager queues every resource again once they are); DaemonSets
        and the statuses of resources without pods do not wait."""
        self.crd = f"{kind.plural}.{plugin.GROUP}"
        self._dropped: frozenset[str] = frozenset()
        """Status fields the kind's CRD does not keep (an older schema, e.g. the reference's:
        no ``observedGeneration``, no ``conditions``), as the last status patch showed. They
        are left out when the wanted status is compared with the stored one."""
        self._recheck_at: datetime.datetime | None = None
        """While fields are dropped: when a status patch carries them again, unchanged."""
        self.resource = resources.Resource.of(
            plugin.API_VERSION, kind.kind, kind.plural, namespaced=False
        )

    def _track(self, name: str) -> _Tracked:
        tracked = self._tracked.get(name)
        if tracked is None:
            tracked = self._tracked[name] = _Tracked()
        return tracked

    def is_echo(self, resource: str, key: str, obj: objects.JsonObject) -> bool:
        """Whether ``obj`` is exactly what the last reconcile of ``resource`` wrote as ``key``.

        Such a watch event needs no reconcile: the writer worked from that very state, and
        no reconcile of the resource has run since (each one forgets the writes before it,
        as it may have read a cache that did not show them yet). Matching forgets the write,
        so that a later relist of the same version does reconcile. A re-list shows only the
        latest version of an object: a write that landed on changes its reconcile did not
        see is never registered, or those changes would be lost with the echo.
        """
        version = objects.resource_version(obj)
        tracked = self._tracked.get(resource)
        if version and tracked is not None and tracked.echoes.get(key) == version:
            del tracked.echoes[key]
            return True
        return False

    def _wrote(self, resource: str, key: str, obj: objects.JsonObject) -> None:
        if version := objects.resource_version(obj):
            self._track(resource).echoes[key] = version

    # Mapping events of owned objects to resource names -----------------------------------
    def owner_of_daemonset(self, obj: objects.JsonObject) -> str | None:
        """Name of the resource of this kind that controls DaemonSet ``obj``."""
        owner = objects.controller_owner(obj)
        if (
            owner
            and owner.get("kind") == self.kind.kind
            and owner.get("apiVersion", "").startswith(plugin.GROUP + "/")
        ):
            return str(owner.get("name"))
        return None

    def node_devices(self, node: objects.JsonObject | None) -> status.NodeDevices:
        """What the status of a resource of this kind reads of ``node``: its figures for the
        kind's resource domain."""
        return status.node_devices(node, self.kind.resource_domain)

    def owner_of_pod(self, pod: objects.JsonObject) -> str | None:
        """Name of the resource of this kind whose DaemonSet controls ``pod``."""
        owner = objects.controller_owner(pod)
        if not owner or owner.get("kind") != "DaemonSet":
            return None
        ds = self.caches.daemonsets.get(f"{objects.namespace(pod)}/{owner.get('name')}")
        return None if ds is None else self.owner_of_daemonset(ds)

    # The loop ----------------------------------------------------------------------------
    async def reconcile(self, name: str) -> float | None:
        """Make resource ``name`` and its DaemonSet match; return seconds to look again, if any.

        Raises ``errors.KubeError`` for failures worth a rate-limited retry.
        """
        resource = self.caches.plugins.get(name)
        if resource is None:
            self._tracked.pop(name, None)
            await self._delete_orphans(name)
            return None
        if (tracked := self._tracked.get(name)) is not None:
            tracked.echoes.clear()
        if objects.metadata(resource).get("deletionTimestamp"):
            # Going: the garbage collector removes its DaemonSet through the owner reference.
            return None
        uid = objects.uid(resource)
        name_conflict: str | None = None
        requeue: float | None = None
        owned = self._owned_daemonsets(uid)
        current: objects.JsonObject | None = next(iter(owned), None)
        rendering = self._rendering(name, uid, resource)
        desired = rendering.desired
        upgrades = rendering.upgrades
        render_error = rendering.render_error
        invalid_spec = (
            None if rendering.refusal is None else _invalid_message(rendering.refusal, current)
        )
        if rendering.refusal is not None:
            log.warning(
                "Spec refused",
                extra={"kind": self.kind.kind, "resource": name, "error": rendering.refusal},
            )
        elif render_error is not None:
            log.warning(
                "Rendering failed",
                extra={"kind": self.kind.kind, "resource": name, "error": render_error},
            )

        if desired is not None:
            render_error = await self._missing_config_map(rendering.config_map)
            if render_error is not None:
                requeue = MISSING_CONFIG_MAP_RETRY

        if desired is not None:
            try:
                current, name_conflict = await self._apply(resource, desired, owned, upgrades)
            except errors.Invalid as refused:
                # A spec the webhook admits may still render what the API server's pod
                # validation refuses (a nodeSelector key that is not a label key, a toleration
                # it does not accept): terminal until the resource changes, so it is reported
                # on the resource instead of being retried forever without a word.
                render_error = _refused_message(refused)
                requeue = None
                log.warning(
                    "DaemonSet refused by the API server",
                    extra={"kind": self.kind.kind, "resource": name, "error": render_error},
                )
            if name_conflict:
                requeue = min(requeue or NAME_CONFLICT_RETRY, NAME_CONFLICT_RETRY)

        recheck = await self._write_status(
            resource, current, render_error, name_conflict, invalid_spec
        )
        if recheck is not None:
            requeue = recheck if requeue is None else min(requeue, recheck)
        return requeue

    def _rendering(self, name: str, uid: str, resource: objects.JsonObject) -> _Rendering:
        """What the spec of ``resource`` renders to, computed once per spec: every pod and
        DaemonSet status change reconciles the resource again, with the same spec (parsing,
        image policy, validation and rendering took a third of a reconcile's time)."""
        source = resource.get("spec")
        known = self._track(name).rendering
        if known is not None and known.uid == uid and known.source == source:
            return known
        rendering = _Rendering(uid=uid, source=copy.deepcopy(source))
        try:
            spec = validation.parse(self.kind, resource)
            raised, upgrades = images.upgraded_spec(
                spec.model_copy(update={"image": spec.image or self.kind.default_image}),
                overrides=self.config.image_overrides,
            )
            # The webhook's checks, on what would run: a resource stored while its kind's
            # webhook was not registered was never judged, and its images run privileged.
            validation.check(self.kind, raised, allowed_registries=self.allowed_registries)
            rendering.spec = spec
            # Read once per spec: a kind without the field answers through pydantic's
            # __getattr__ and an AttributeError, on every reconcile.
            rendering.config_map = getattr(spec, "provisioning_config", None)
            rendering.desired = daemonset.desired_daemonset(self.kind, name, uid, spec, self.config)
            rendering.upgrades = upgrades
        except validation.Invalid as invalid:
            rendering.refusal = invalid.message
        except daemonset.RenderError as error:
            rendering.render_error = str(error)
        self._track(name).rendering = rendering
        return rendering

    async def _missing_config_map(self, config_map: str | None) -> str | None:
        """A message when ``spec.provisioningConfig`` names a ConfigMap that does not exist.

        The DaemonSet is still rendered (its pods start once the ConfigMap appears), but the
        resource reports the problem instead of leaving pods stuck without a word.
        """
        if not config_map:
            return None
        namespace = self.config.plugin_namespace
        try:
            await self.kube.get(resources.CONFIG_MAPS, config_map, namespace)
        except errors.NotFound:
            return (
                f"spec.provisioningConfig: ConfigMap {namespace}/{config_map} does not exist: "
                f"create it in {namespace} or clear spec.provisioningConfig"
            )
        return None

    def _owned_daemonsets(self, uid: str) -> list[objects.JsonObject]:
        return sorted(self.caches.daemonsets.by_index(cache.CONTROLLER_UID, uid), key=objects.name)

    async def _apply(
        self,
        resource: objects.JsonObject,
        desired: objects.JsonObject,
        owned: list[objects.JsonObject],
        upgrades: Iterable[str],
    ) -> tuple[objects.JsonObject | None, str | None]:
        """Create, adopt or update the DaemonSet and delete duplicates: (DaemonSet, conflict)."""
        name = objects.name(desired)
        namespace = self.config.plugin_namespace
        primary = next(
            (ds for ds in owned if objects.name(ds) == name and objects.namespace(ds) == namespace),
            None,
        )
        if primary is None and len(owned) == 1:
            primary = owned[0]  # a legacy DaemonSet of this resource: adopted, never renamed
        for duplicate in owned:
            if duplicate is not primary:
                await self._delete_duplicate(resource, duplicate)

        if primary is None:
            foreign = self.caches.daemonsets.get(f"{namespace}/{name}")
            if foreign is not None and self._left_by_earlier_incarnation(foreign, resource):
                await self._delete_stale(resource, foreign)
                foreign = None
            if foreign is not None:
                conflict = (
                    f"DaemonSet {namespace}/{name} exists and is not controlled by this "
                    f"{self.kind.kind}: delete or rename it, or rename this resource"
                )
                return None, conflict
            created = await self.kube.create(DAEMON_SETS, desired, namespace=namespace)
            self._wrote(objects.name(resource), objects.key(created), created)
            self._hold_status(objects.name(resource))
            self._record_upgrades(resource, upgrades)
            self.recorder.normal(resource, "Created", f"Created DaemonSet {namespace}/{name}")
            log.info(
                "Created DaemonSet",
                extra={
                    "kind": self.kind.kind,
                    "resource": objects.name(resource),
                    "daemonset": f"{namespace}/{name}",
                },
            )
            return created, None

        tracked = self._track(objects.name(resource))
        matched = tracked.matched
        if matched is not None and matched[0] is desired and matched[1] == _match_key(primary):
            return primary, None
        wanted = drift.with_rendered_lists(_retarget(desired, primary))
        if drift.matches(wanted, primary):
            tracked.matched = (desired, _match_key(primary))
            return primary, None
        adopted = (
            objects.labels(primary).get("app.kubernetes.io/managed-by") != daemonset.MANAGED_BY
        )
        body = drift.overlay(primary, wanted)
        updated = await self.kube.replace(
            DAEMON_SETS, objects.name(primary), body, namespace=objects.namespace(primary)
        )
        self._wrote(objects.name(resource), objects.key(primary), updated)
        self._hold_status(objects.name(resource))
        self._record_upgrades(resource, upgrades)
        where = f"{objects.namespace(primary)}/{objects.name(primary)}"
        reason, verb = ("Adopted", "Adopted") if adopted else ("Updated", "Updated")
        self.recorder.normal(resource, reason, f"{verb} DaemonSet {where}")
        log.info(
            f"{verb} DaemonSet",
            extra={"kind": self.kind.kind, "resource": objects.name(resource), "daemonset": where},
        )
        return updated, None

    async def _delete_orphans(self, name: str) -> None:
        """Delete the DaemonSets of resource ``name`` when it is gone for sure.

        The garbage collector would, but it can lag by tens of seconds (after an apiserver
        restart, a CRD it has not discovered yet), and until then the plugin keeps running
        on every node. The cache may be behind a resource created a moment ago, so the
        apiserver is asked before anything is deleted; deletes carry the DaemonSet's UID.
        """
        orphans = [
            ds for ds in self.caches.daemonsets.list() if self.owner_of_daemonset(ds) == name
        ]
        if not orphans:
            return
        try:
            current = await self.kube.get(self.resource, name)
        except errors.NotFound:
            current = None
        for ds in orphans:
            owner = objects.controller_owner(ds) or {}
            if current is not None and objects.uid(current) == owner.get("uid"):
                continue  # the resource exists: the cache was behind
            if (where := await self._delete_exactly(ds)) is not None:
                log.info(
                    "Deleted DaemonSet of a deleted resource",
                    extra={"kind": self.kind.kind, "resource": name, "daemonset": where},
                )

    def _left_by_earlier_incarnation(
        self, ds: objects.JsonObject, resource: objects.JsonObject
    ) -> bool:
        """Whether ``ds`` is controlled by a deleted resource of this kind and name: names of
        these cluster-scoped resources are unique, so an owner of the same name with another
        UID is gone, and the DaemonSet is garbage the collector has not reached yet."""
        owner = objects.controller_owner(ds)
        return (
            self.owner_of_daemonset(ds) == objects.name(resource)
            and owner is not None
            and owner.get("uid") != objects.uid(resource)
        )

    async def _delete_stale(self, resource: objects.JsonObject, stale: objects.JsonObject) -> None:
        # Not left to the garbage collector: a resource deleted and created again would wait
        # for it (seconds to minutes when the collector is behind) behind a name conflict.
        if (where := await self._delete_exactly(stale)) is None:
            return
        self.recorder.normal(
            resource, "DeletedStale", f"Deleted DaemonSet {where} of a deleted {self.kind.kind}"
        )
        log.info(
            "Deleted DaemonSet of a deleted resource",
            extra={"kind": self.kind.kind, "daemonset": where},
        )

    async def _delete_duplicate(
        self, resource: objects.JsonObject, duplicate: objects.JsonObject
    ) -> None:
        if (where := await self._delete_exactly(duplicate)) is None:
            return
        self.recorder.normal(resource, "DeletedDuplicate", f"Deleted duplicate DaemonSet {where}")
        log.info("Deleted duplicate DaemonSet", extra={"kind": self.kind.kind, "daemonset": where})

    async def _delete_exactly(self, ds: objects.JsonObject) -> str | None:
        """Delete this very DaemonSet (UID precondition); where it was, or None when it was
        gone already or replaced by another of the same name."""
        where = f"{objects.namespace(ds)}/{objects.name(ds)}"
        try:
            await self.kube.delete(
                DAEMON_SETS, objects.name(ds), namespace=objects.namespace(ds), uid=objects.uid(ds)
            )
        except (errors.NotFound, errors.Conflict):
            return None
        return where

    def _record_upgrades(self, resource: objects.JsonObject, upgrades: Iterable[str]) -> None:
        for message in upgrades:
            self.recorder.normal(resource, "ImageUpgraded", message)

    async def _write_status(
        self,
        resource: objects.JsonObject,
        current: objects.JsonObject | None,
        render_error: str | None,
        name_conflict: str | None,
        invalid_spec: str | None = None,
    ) -> float | None:
        """Patch the status when it changed; seconds until it must be looked at again
        (a node without devices whose grace period ends), if any."""
        name = objects.name(resource)
        tracked = self._track(name)
        previous_raw = resource.get("status") or {}
        pods = [] if current is None else self.caches.pods.by_index(POD_OWNER, objects.uid(current))
        if pods and self.nodes_pending:
            return None
        nodes = {
            name: node
            for name in {where for pod in pods for where in pod_node(pod)}
            if (node := self.caches.nodes.get(name)) is not None
        }
        inputs = _StatusInputs(
            daemonset=current,
            pods=pods,
            nodes=nodes,
            prior=tracked.prior(previous_raw.get("conditions")),
            generation=int(objects.metadata(resource).get("generation", 0)),
            messages=(
                name_conflict,
                render_error,
                invalid_spec,
                self._overlap_message(resource, current, pods),
                self.nodes_unreadable,
            ),
            second=self.clock().replace(microsecond=0),
        )
        known = tracked.observed
        if known is not None and known[0].same_as(inputs):
            observed = known[1]
        else:
            observed = status.observe(
                current,
                pods,
                generation=inputs.generation,
                now=inputs.second,
                prior=inputs.prior,
                name_conflict=name_conflict,
                render_error=render_error,
                invalid_spec=invalid_spec,
                overlap=inputs.messages[3],
                nodes=nodes,
                domain=self.kind.resource_domain,
                devices_grace=self.devices_grace,
                nodes_unreadable=self.nodes_unreadable,
            )
            tracked.observed = (inputs, observed)
        recheck = observed.recheck
        wanted = observed.status
        kept = _without(wanted, self._dropped)
        version = objects.resource_version(resource)
        last = tracked.written
        if last is not None and last[0] != version:
            # The cache moved past the version we last wrote from: it shows that write.
            tracked.written = last = None
        # While the cache is still at that version, what the server has is what we wrote
        # then (the reconcile after a create, woken by the DaemonSet's ADDED event, or one
        # woken by a pod event before our own status write came back).
        server = previous_raw if last is None else last[1]
        if _same_status(server, kept) and not self._schema_recheck_due():
            return recheck
        now = self.monotonic()
        wait = tracked.status_due - now
        if _counts_only(server, kept):
            wait = max(wait, tracked.status_written + self.progress_interval - now)
        if wait > 0 and not _turns_true(server, kept, URGENT_CONDITIONS):
            return wait if recheck is None else min(wait, recheck)
        patch = _merge_patch(server, wanted)
        try:
            written = await self.kube.patch_status(self.resource, name, {"status": patch})
        except errors.NotFound:
            tracked.written = None
            return None
        # Every patch carries the whole status: what it returns shows which fields the CRD
        # keeps, so an upgraded CRD is noticed with the next status change.
        self._hold_status(name)
        tracked.status_written = self.monotonic()
        dropped = frozenset(key for key in wanted if key not in (written.get("status") or {}))
        self._schema_seen(resource, dropped)
        tracked.written = (version, _without(wanted, dropped))
        if "conditions" not in dropped:
            tracked.wrote_conditions(wanted["conditions"])
        if _beside_status(written) == _beside_status(resource):
            # Only an exact echo: an unconditional merge patch also lands on changes the
            # cache did not show yet (a spec change while its watch was down), and the version
            # it returns may be all a re-list ever shows of them.
            self._wrote(name, name, written)
        return recheck

    def _hold_status(self, name: str) -> None:
        self._track(name).status_due = self.monotonic() + self.status_interval

    def _schema_recheck_due(self) -> bool:
        """Whether this status patch should carry the dropped fields to see if they stay
        (taken by one reconcile per ``SCHEMA_RECHECK``)."""
        if self._recheck_at is None or self.clock() < self._recheck_at:
            return False
        self._recheck_at = self.clock() + SCHEMA_RECHECK
        return True

    def _schema_seen(self, resource: objects.JsonObject, dropped: frozenset[str]) -> None:
        """Take note of the status fields a patch of ``resource`` showed dropped; a field
        newly dropped is reported once (log and Event), as fields kept again are."""
        if dropped == self._dropped:
            return
        newly = dropped - self._dropped
        self._dropped = dropped
        self._recheck_at = self.clock() + SCHEMA_RECHECK if dropped else None
        fields = ", ".join(f"status.{field}" for field in sorted(dropped))
        if newly:
            message = (
                f"The API server drops {fields} from every {self.kind.kind}: the CRD "
                f"{self.crd} is older than this operator (such as the reference operator's, "
                "which Helm and OLM do not upgrade), so statuses are written without them. "
                f"Apply this operator's CRDs to get them: {CRD_FIX}"
            )
            log.warning(message, extra={"kind": self.kind.kind, "crd": self.crd})
            self.recorder.warning(resource, "OutdatedCRD", message)
        elif not dropped:
            log.info(
                "The CRD keeps every status field again",
                extra={"kind": self.kind.kind, "crd": self.crd},
            )

    def _overlap_message(
        self,
        resource: objects.JsonObject,
        current: objects.JsonObject | None,
        own_pods: list[objects.JsonObject],
    ) -> str | None:
        """Nodes where a DaemonSet of another resource of this kind runs a plugin pod too
        (``own_pods``: those of ``current``, as the status read them)."""
        if current is None:
            return None
        mine_uid = objects.uid(current)
        mine = {node for pod in own_pods for node in pod_node(pod)}
        pods = self.caches.pods
        # The answer holds while no pod comes to, leaves or changes owner on these nodes and
        # no DaemonSet comes, goes or changes owner (which decides whose a pod is): most
        # reconciles at scale are for a pod's status, and walking every pod on every node of
        # the resource was 40 % of the operator's time converging 80 resources on 1000 nodes.
        key = (
            mine_uid,
            self.caches.daemonsets.placement_version,
            tuple(sorted((node, pods.index_version(POD_NODE, node)) for node in mine)),
        )
        tracked = self._track(objects.name(resource))
        if tracked.overlap is not None and tracked.overlap[0] == key:
            return tracked.overlap[1]
        message = self._overlap_on(resource, mine_uid, mine)
        tracked.overlap = (key, message)
        return message

    def _overlap_on(
        self, resource: objects.JsonObject, mine_uid: str, mine: set[str]
    ) -> str | None:
        nodes_by_owner: dict[str, set[str]] = {}
        resource_of: dict[str, str | None] = {}  # DaemonSet UID → resource of this kind
        for node in mine:
            for pod in self.caches.pods.by_index(POD_NODE, node):
                (uid,) = pod_owner_uid(pod) or ("",)
                if not uid or uid == mine_uid:
                    continue
                if uid not in resource_of:
                    resource_of[uid] = self.owner_of_pod(pod)
                if (cr := resource_of[uid]) is not None:
                    nodes_by_owner.setdefault(cr, set()).add(node)
        for other, nodes in sorted(nodes_by_owner.items()):
            shared = sorted(mine & nodes)
            if shared and other != objects.name(resource):
                return (
                    f"{self.kind.kind} {other} also runs a plugin on {', '.join(shared[:5])}: "
                    "make the nodeSelectors of the two resources disjoint"
                )
        return None


DAEMON_SETS = resources.DAEMON_SETS


@dataclasses.dataclass
class _Tracked:
    """What the reconciles of one resource keep for the next one."""

    status_due: float = 0.0
    """The ``monotonic`` time before which its status is not written again (set by a status
    write, and by a DaemonSet write: the status it leaves is about to change with the
    DaemonSet controller's answer)."""
    status_written: float = -math.inf
    """The ``monotonic`` time of its last status write (``PROGRESS_INTERVAL``)."""
    rendering: _Rendering | None = None
    """The rendering of its current spec (``_rendering``)."""
    overlap: tuple[tuple[Any, ...], str | None] | None = None
    """The overlap message last found and what it was found from (``_overlap_message``)."""
    matched: tuple[objects.JsonObject, tuple[Any, ...]] | None = None
    """The desired DaemonSet its live one was last found to match, and the live one's
    ``_match_key`` then (``_apply``)."""
    written: tuple[str, dict[str, Any]] | None = None
    """The resourceVersion the cache held when its status was last written, and that status.
    Until the cache moves past that version it cannot show the write, and the same status is
    not written again."""
    echoes: dict[str, str] = dataclasses.field(default_factory=dict)
    """The objects its last reconcile wrote (``<namespace>/<name>`` of a DaemonSet, the
    resource's own name for its status) and the resourceVersion each write returned, kept
    only when that version holds nothing but the write on top of what the reconcile read: a
    create has nothing before it, an update is conditional on the version read, a status patch
    is not and is checked (``_beside_status``). See ``Reconciler.is_echo``."""
    observed: tuple[_StatusInputs, status.Observation] | None = None
    """The status last computed, and what from (``_StatusInputs``)."""
    conditions: tuple[Any, dict[str, status.Prior]] = (None, {})
    """The stored ``status.conditions`` last read, and what ``status.prior_conditions`` made
    of them."""

    def prior(self, raw: Any) -> dict[str, status.Prior]:
        """``status.prior_conditions(raw)``, validated again only when ``raw`` changed: most
        reconciles read the conditions the previous one did (cached objects are never
        changed in place, so the same object is the same value)."""
        known, prior = self.conditions
        if raw is not known and raw != known:
            prior = status.prior_conditions(raw)
            self.conditions = (raw, prior)
        return prior

    def wrote_conditions(self, conditions: list[dict[str, Any]]) -> None:
        """Take the conditions a status write stored as the ones the next reconcile reads
        back, so that they are not validated again (a status changes with every pod
        starting, each time with conditions built here)."""
        known, _ = self.conditions
        if conditions != known:
            self.conditions = (conditions, status.observed_prior(conditions))


@dataclasses.dataclass(slots=True)
class _StatusInputs:
    """Everything ``status.observe`` computes a resource's status from, but the reconciler's
    constants (kind, grace): the same inputs give the same status and recheck, so a
    reconcile that reads them again (a held status written at the end of its interval, an
    event about a field the status does not show) takes the last status as it is. Cached
    objects are replaced, never changed, so an object that is the very one read last time
    is unchanged. ``observe`` reads the time to the second only: the same second is the same
    time, and any other second is a new status (conditions' transition times, the devices
    grace and a crash's recovery all move with it)."""

    daemonset: objects.JsonObject | None
    pods: list[objects.JsonObject]
    nodes: dict[str, objects.JsonObject]
    prior: dict[str, status.Prior]
    """``_Tracked.prior``'s: the same object while the stored conditions are the same."""
    generation: int
    messages: tuple[str | None, ...]
    """name conflict, render error, invalid spec, overlap, nodes unreadable."""
    second: datetime.datetime

    def same_as(self, other: _StatusInputs) -> bool:
        return (
            self.second == other.second
            and self.daemonset is other.daemonset
            and self.prior is other.prior
            and self.generation == other.generation
            and self.messages == other.messages
            and len(self.pods) == len(other.pods)
            and all(mine is theirs for mine, theirs in zip(self.pods, other.pods, strict=True))
            and len(self.nodes) == len(other.nodes)
            and all(other.nodes.get(name) is node for name, node in self.nodes.items())
        )


@dataclasses.dataclass
class _Rendering:
    """The outcome of rendering one spec of one resource: a DaemonSet, or why there is none."""

    uid: str
    source: Any
    """A copy of the resource's ``spec`` this was rendered from."""
    spec: Any = None
    config_map: str | None = None
    """The spec's ``provisioningConfig`` (a ConfigMap name), if its kind has one."""
    desired: objects.JsonObject | None = None
    upgrades: tuple[str, ...] = ()
    refusal: str | None = None
    """The validating webhook's denial of the spec."""
    render_error: str | None = None


def _match_key(live: objects.JsonObject) -> tuple[Any, ...]:
    """What a live DaemonSet's match with a rendering depends on, short of comparing them:
    its identity and spec generation (every spec change increments it; status writes do
    not) and the metadata a rendering sets, which changes without a new generation."""
    meta_ = objects.metadata(live)
    return (
        meta_.get("uid"),
        meta_.get("generation"),
        meta_.get("labels"),
        meta_.get("annotations"),
        meta_.get("ownerReferences"),
    )


def _retarget(desired: objects.JsonObject, live: objects.JsonObject) -> objects.JsonObject:
    """``desired`` aimed at an adopted DaemonSet that keeps its own name and selector."""
    if objects.name(live) == objects.name(desired):
        return desired
    retargeted = dict(desired)
    retargeted["metadata"] = {
        **desired["metadata"],
        "name": objects.name(live),
        "namespace": objects.namespace(live),
    }
    return retargeted


def _invalid_message(denial: str, current: objects.JsonObject | None) -> str:
    if current is None:
        return f"{denial}: no DaemonSet is created until the spec is fixed"
    where = f"{objects.namespace(current)}/{objects.name(current)}"
    return f"{denial}: the DaemonSet {where} is left as it is until the spec is fixed"


def _refused_message(error: errors.ApiError) -> str:
    detail = error.message
    if len(detail) > 2000:
        detail = detail[:2000] + "..."
    return (
        f"The API server refused the rendered DaemonSet: {detail}: fix the named field "
        "(spec.nodeSelector, spec.tolerations, ...) in the resource"
    )


def _turns_true(server: dict[str, Any], wanted: dict[str, Any], types: frozenset[str]) -> bool:
    """Whether a condition of ``types`` is True in ``wanted`` and not in ``server``."""

    def true(found: dict[str, Any]) -> set[str]:
        conditions = found.get("conditions")
        return {
            str(condition.get("type"))
            for condition in (conditions if isinstance(conditions, list) else ())
            if isinstance(condition, dict)
            and condition.get("type") in types
            and condition.get("status") == "True"
        }

    return bool(true(wanted) - true(server))


_COUNTS = frozenset(
    {"desiredNumberScheduled", "numberReady", "nodeNames", "devices", "deviceTotals"}
)
"""Status fields that count pods, nodes and devices: they move with every plugin pod."""


def _counts_only(server: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether ``wanted`` differs from ``server`` in the counting fields and the conditions'
    messages only: the same conditions with the same status, reason and observedGeneration, the
    same ``observedGeneration`` and ``controlledDaemonSet``."""
    if not server or server.keys() != wanted.keys():
        return False
    if any(
        server[key] != wanted[key] for key in wanted if key not in _COUNTS and key != "conditions"
    ):
        return False

    def steady(conditions: Any) -> list[tuple[Any, ...]] | None:
        if not isinstance(conditions, list) or not all(isinstance(c, dict) for c in conditions):
            return None
        return [
            tuple(c.get(key) for key in ("type", "status", "reason", "observedGeneration"))
            for c in conditions
        ]

    before = steady(server.get("conditions"))
    return before is not None and before == steady(wanted.get("conditions"))


def _same_status(previous: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return previous == wanted


def _merge_patch(server: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that makes ``server`` into ``wanted``: fields that disappeared must be
    removed explicitly, also inside objects (e.g. nodeNames when no pod runs, the
    ``controlledDaemonSet.resourceVersion`` the reference writes), or the stored status never
    equals the wanted one and each change of the resource brings another patch."""
    patch: dict[str, Any] = {key: None for key in server if key not in wanted}
    for key, value in wanted.items():
        before = server.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = _merge_patch(before, value)
        else:
            patch[key] = value
    return patch


def _without(status: dict[str, Any], dropped: frozenset[str]) -> dict[str, Any]:
    if not dropped:
        return status
    return {key: value for key, value in status.items() if key not in dropped}


_WRITTEN_BY_EVERY_WRITE = frozenset({"resourceVersion", "managedFields"})


def _beside_status(obj: objects.JsonObject) -> objects.JsonObject:
    """``obj`` without what a status write of ours changes in it: the status itself, the
    resourceVersion and managedFields (which the cache does not keep)."""
    rest = {key: value for key, value in obj.items() if key != "status"}
    rest["metadata"] = {
        key: value
        for key, value in objects.metadata(obj).items()
        if key not in _WRITTEN_BY_EVERY_WRITE
    }
    return rest
