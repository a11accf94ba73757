"""The webhooks this operator serves, as data: one list drives both the server's routes and the
webhook configurations, so the two cannot disagree.

Names and paths are the reference's (its ``deployments/operator/webhook/manifests.yaml``):

* ``m<dev>deviceplugin.kb.io`` at ``/mutate-deviceplugin-intel-com-v1-<dev>deviceplugin``:
  defaulting of the device's resources;
* ``v<dev>deviceplugin.kb.io`` at ``/validate-deviceplugin-intel-com-v1-<dev>deviceplugin``:
  their validation;
* ``sgx.mutator.webhooks.intel.com`` at ``/mutate--v1-pod``: the SGX Pod mutator (with sgx);
* ``fpga.mutator.webhooks.intel.com`` at ``/pods``: the FPGA Pod mutator (with fpga).

Only enabled devices get webhooks (the reference installed all of them, so resources of a
disabled kind could not be created and every pod creation called a 404 endpoint). The pod
webhooks carry CEL ``matchConditions`` so that the API server calls them only for pods that
need them; they can then fail closed (``Fail``) without making any other pod creation depend
on this operator — the reference used ``Ignore`` and so admitted SGX pods unmutated, without
their enclave device, whenever it was down.

The pod webhooks' names, paths and conditions are data of the device records
(``DeviceKind.pod_mutator``), which the manifest generators read too.
``REQUESTS_SGX`` and ``REQUESTS_FPGA``, in words: *some container (init containers do not
count, as the mutators do not look at them) names a resource of the domain, in ``limits`` or
in ``requests``*. ``has()`` guards each optional field, because reading an absent one is an
evaluation error, which the API server would treat as the failure policy says. Examples::

    containers: [{resources: {limits: {sgx.intel.com/epc: 1Mi}}}]         → called
    containers: [{resources: {requests: {fpga.intel.com/arria10: 1}}}]    → called (FPGA)
    containers: [{}], or [{resources: {limits: {cpu: 1}}}]                → not called
    initContainers only asking for sgx.intel.com/epc                     → not called
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from deviceplugin_operator import devices
from deviceplugin_operator.devices import kind as device_kind

FailurePolicy = Literal["Fail", "Ignore"]
TIMEOUT_SECONDS = 10


def _pod_mutator(device: str) -> device_kind.PodMutator:
    mutator = devices.KINDS[device].pod_mutator
    if mutator is None:
        raise LookupError(f"{device} brings no Pod webhook")
    return mutator


SGX_POD_PATH = _pod_mutator("sgx").path
FPGA_POD_PATH = _pod_mutator("fpga").path
REQUESTS_SGX = _pod_mutator("sgx").match_expression
REQUESTS_FPGA = _pod_mutator("fpga").match_expression


class Verb(enum.Enum):
    """What a webhook does; the server has one handler per verb."""

    DEFAULT = "default"
    VALIDATE = "validate"
    MUTATE_SGX_POD = "mutate-sgx-pod"
    MUTATE_FPGA_POD = "mutate-fpga-pod"


@dataclasses.dataclass(frozen=True)
class Rule:
    api_group: str
    api_version: str
    resource: str
    operations: tuple[str, ...]

    def wire(self) -> dict[str, Any]:
        return {
            "apiGroups": [self.api_group],
            "apiVersions": [self.api_version],
            "operations": list(self.operations),
            "resources": [self.resource],
        }


@dataclasses.dataclass(frozen=True)
class MatchCondition:
    name: str
    expression: str
    """CEL over ``object`` (the pod) and ``request``."""


@dataclasses.dataclass(frozen=True)
class Webhook:
    """One entry of a Mutating/ValidatingWebhookConfiguration, and the route serving it."""

    name: str
    path: str
    verb: Verb
    device: str
    """The enabled device that brings this webhook."""

    rule: Rule
    failure_policy: FailurePolicy = "Fail"
    reinvocation_policy: Literal["Never", "IfNeeded"] | None = None
    match_conditions: tuple[MatchCondition, ...] = ()

    @property
    def mutating(self) -> bool:
        return self.verb is not Verb.VALIDATE

    @property
    def kind(self) -> devices.DeviceKind[Any]:
        """The device kind whose resources a DEFAULT or VALIDATE webhook admits."""
        return devices.KINDS[self.device]

    def registration(self, client_config: Mapping[str, Any]) -> dict[str, Any]:
        """The webhook's entry in an admissionregistration.k8s.io/v1 configuration."""
        entry: dict[str, Any] = {
            "admissionReviewVersions": ["v1"],
            "clientConfig": dict(client_config),
            "failurePolicy": self.failure_policy,
            "name": self.name,
            "rules": [self.rule.wire()],
            "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS,
        }
        if self.match_conditions:
            entry["matchConditions"] = [
                {"name": condition.name, "expression": condition.expression}
                for condition in self.match_conditions
            ]
        if self.reinvocation_policy is not None:
            entry["reinvocationPolicy"] = self.reinvocation_policy
        return entry


_PODS = Rule("", "v1", "pods", ("CREATE",))

_POD_VERBS: Mapping[str, Verb] = {"sgx": Verb.MUTATE_SGX_POD, "fpga": Verb.MUTATE_FPGA_POD}
"""Which handler serves the Pod webhook a device brings (``DeviceKind.pod_mutator``)."""


def _pod_webhook(kind: devices.DeviceKind[Any]) -> Webhook | None:
    mutator = kind.pod_mutator
    if mutator is None:
        return None
    return Webhook(
        name=mutator.webhook,
        path=mutator.path,
        verb=_POD_VERBS[kind.name],
        device=kind.name,
        rule=_PODS,
        reinvocation_policy=mutator.reinvocation_policy,
        match_conditions=(MatchCondition(mutator.match_condition, mutator.match_expression),),
    )


def _resource_webhooks(kind: devices.DeviceKind[Any]) -> tuple[Webhook, Webhook]:
    rule = Rule(kind.resource.group, kind.resource.version, kind.plural, ("CREATE", "UPDATE"))
    return (
        Webhook(
            name=f"m{kind.singular}.kb.io",
            path=kind.mutate_path,
            verb=Verb.DEFAULT,
            device=kind.name,
            rule=rule,
        ),
        Webhook(
            name=f"v{kind.singular}.kb.io",
            path=kind.validate_path,
            verb=Verb.VALIDATE,
            device=kind.name,
            rule=rule,
        ),
    )


def webhooks(
    device_names: Iterable[str], *, pod_failure_policy: FailurePolicy = "Fail"
) -> list[Webhook]:
    """The webhooks of the enabled devices, in name order (the reference's file order).

    ``pod_failure_policy`` applies to the two pod webhooks: ``Fail`` (default) relies on their
    matchConditions (Kubernetes >= 1.28) to keep other pods away; ``Ignore`` is the
    reference's choice.
    """
    found: list[Webhook] = []
    for name in dict.fromkeys(device_names):
        found += _resource_webhooks(devices.KINDS[name])
        pod_webhook = _pod_webhook(devices.KINDS[name])
        if pod_webhook is not None:
            found.append(dataclasses.replace(pod_webhook, failure_policy=pod_failure_policy))
    return sorted(found, key=lambda webhook: webhook.name)
