"""Install-lifecycle steps the Helm chart's hooks run in the operator image (also usable by hand).

``deviceplugin-operator lifecycle apply-crds``: server-side apply of the operator's own CRDs,
generated from its models as ``make generate`` writes them, with one field manager. Helm
installs a chart's ``crds/`` once and never upgrades them, so the pre-install/pre-upgrade hook
runs this: an upgrade that adds a schema field takes.

``deviceplugin-operator lifecycle check-admission``: a server-side dry-run create of a resource
of each enabled kind, through the API server and so through the admission webhooks, retried
until they answer. The post-install hook and ``helm test`` run it, so that ``helm install``
returns only once resources can be created (no webhook "connection refused" right after).

``deviceplugin-operator lifecycle cleanup``: once the operator's pods are gone, delete what it
created at run time in its namespace (the certificate Secret, the leader-election Lease);
the post-delete hook runs it so that ``helm uninstall`` leaves none of them behind.

Each step prints one line per object and ends with exit status 0, or prints one line naming
the cause and the fix and ends with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from deviceplugin_operator import devices
from deviceplugin_operator.api import plugin
from deviceplugin_operator.kube import client, errors, objects, resources
from deviceplugin_operator.manifests import crd

FIELD_MANAGER = "intel-deviceplugin-operator-crds"
"""The field manager of the applied CRDs (``kubectl get crd --show-managed-fields``)."""
CHECK_NAME = "admission-check"
"""Name of the dry-run resources (never stored)."""
FAILED = 1

Echo = Callable[[str], None]


class StepError(Exception):
    """A step that cannot succeed; the message names the cause and the fix."""


async def apply_crds(kube: client.KubeClient, *, field_manager: str, echo: Echo) -> list[str]:
    """Apply every CRD; return their names. Waits until new ones are established."""
    names = []
    for definition in crd.definitions():
        body = crd.custom_resource_definition(definition)
        name = objects.name(body)
        try:
            before: objects.JsonObject | None = await kube.get(
                resources.CUSTOM_RESOURCE_DEFINITIONS, name
            )
        except errors.NotFound:
            before = None
        try:
            after = await kube.apply(
                resources.CUSTOM_RESOURCE_DEFINITIONS, body, field_manager=field_manager
            )
        except errors.Forbidden as error:
            raise StepError(
                f"applying CRD {name} was forbidden ({error.message}): the hook's ClusterRole "
                "must allow get and patch on it (and create where the CRD does not exist yet)"
            ) from error
        if before is None:
            state = "created"
        elif objects.resource_version(before) == objects.resource_version(after):
            state = "unchanged"
        else:
            state = "updated"
        echo(f"customresourcedefinition/{name} {state}")
        names.append(name)
    for name in names:
        await _established(kube, name)
    return names


async def _established(kube: client.KubeClient, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = await kube.get(resources.CUSTOM_RESOURCE_DEFINITIONS, name)
        conditions = (found.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        if time.monotonic() > deadline:
            raise StepError(f"CRD {name} is not established after {timeout:.0f}s")
        await asyncio.sleep(0.5)


def probe(kind: devices.DeviceKind[Any]) -> objects.JsonObject:
    """The dry-run resource of ``kind``: an empty spec, which the defaulting webhook completes."""
    return {
        "apiVersion": plugin.API_VERSION,
        "kind": kind.kind,
        "metadata": {"name": CHECK_NAME},
        "spec": {},
    }


def _resource(kind: devices.DeviceKind[Any]) -> resources.Resource:
    return resources.Resource.of(plugin.API_VERSION, kind.kind, kind.plural, namespaced=False)


async def check_admission(
    kube: client.KubeClient,
    kinds: Sequence[str],
    *,
    timeout: float,
    echo: Echo,
    interval: float = 2.0,
) -> None:
    """Until every kind's webhooks answer a dry-run create; raise StepError at ``timeout``.

    Admitted means the defaulting webhook set ``spec.image`` (so it ran) and the validating
    one allowed it (both fail closed). A webhook's denial is an answer too (e.g.
    ``--allowed-image-registries`` refusing the default image): reported, not retried.
    """
    deadline = time.monotonic() + timeout
    for name in kinds:
        kind = devices.KINDS[name]
        last = ""
        while True:
            try:
                created = await kube.create(_resource(kind), probe(kind), dry_run=True)
            except errors.ApiError as error:
                if "denied the request" in error.message:
                    echo(f"{kind.kind}: admission webhooks answer (denied: {error.message})")
                    break
                if isinstance(error, errors.Forbidden | errors.Unauthorized):
                    raise StepError(
                        f"creating a {kind.kind} was refused ({error.message}): the check's "
                        f"ServiceAccount needs create on {kind.plural}.{plugin.GROUP}"
                    ) from error
                reason = error.message
            except errors.TransportError as error:
                reason = str(error)
            else:
                image = (created.get("spec") or {}).get("image")
                if image != kind.default_image:
                    raise StepError(
                        f"{kind.kind} was admitted without the defaulting webhook "
                        f"(spec.image {image!r}): is the mutating webhook configuration there?"
                    )
                echo(f"{kind.kind}: admitted by the webhooks (server-side dry run)")
                break
            if reason != last:
                echo(f"{kind.kind}: waiting for the admission webhooks: {reason}")
                last = reason
            if time.monotonic() > deadline:
                raise StepError(
                    f"the admission webhooks did not answer within {timeout:.0f}s (last: "
                    f"{reason}); check the operator pods (kubectl get pods, logs) and the "
                    "webhook Service's endpoints"
                )
            await asyncio.sleep(interval)


async def cleanup(
    kube: client.KubeClient,
    namespace: str,
    *,
    selector: str,
    secrets: Sequence[str],
    leases: Sequence[str],
    timeout: float,
    echo: Echo,
) -> None:
    """Wait until no pod matches ``selector`` (a terminating operator could write its Secret
    or Lease again), then delete the named Secrets and Leases; absent ones are fine."""
    deadline = time.monotonic() + timeout
    while pods := (await kube.list(resources.PODS, namespace, label_selector=selector)).items:
        if time.monotonic() > deadline:
            raise StepError(
                f"{len(pods)} operator pod(s) ({selector}) still in {namespace} after "
                f"{timeout:.0f}s; delete them, then the Secret and Lease by hand"
            )
        await asyncio.sleep(1.0)
    for resource, names in ((resources.SECRETS, secrets), (resources.LEASES, leases)):
        for name in names:
            try:
                await kube.delete(resource, name, namespace)
            except errors.NotFound:
                echo(f"{resource.kind.lower()}/{name} not found")
            else:
                echo(f"{resource.kind.lower()}/{name} deleted")


def parser(parse_duration: Callable[[str], float]) -> argparse.ArgumentParser:
    """``deviceplugin-operator lifecycle``'s steps and their flags."""
    parser = argparse.ArgumentParser(
        prog="deviceplugin-operator lifecycle",
        description="Install steps the Helm chart's hooks run (usable by hand too).",
    )
    steps = parser.add_subparsers(dest="step", required=True)
    apply = steps.add_parser("apply-crds", help="server-side apply the operator's CRDs")
    apply.add_argument("--field-manager", default=FIELD_MANAGER)
    check = steps.add_parser(
        "check-admission", help="wait until the webhooks admit a dry-run resource of each kind"
    )
    check.add_argument(
        "--devices",
        default="",
        help=f"comma list of kinds ({', '.join(devices.KINDS)}); default: all",
    )
    check.add_argument("--timeout", type=parse_duration, default=240.0, metavar="DURATION")
    clean = steps.add_parser("cleanup", help="delete the operator's run-time Secret and Lease")
    clean.add_argument("--namespace", required=True)
    clean.add_argument("--selector", required=True, help="label selector of the operator pods")
    clean.add_argument("--secret", action="append", default=[])
    clean.add_argument("--lease", action="append", default=[])
    clean.add_argument("--timeout", type=parse_duration, default=120.0, metavar="DURATION")
    for step in (apply, check, clean):
        step.add_argument("--kubeconfig", default=None, help="default: in-cluster")
    return parser


def _kinds(text: str) -> list[str]:
    kinds = [name for name in text.split(",") if name] or list(devices.KINDS)
    unknown = [name for name in kinds if name not in devices.KINDS]
    if unknown:
        raise StepError(
            f"--devices: unknown {', '.join(unknown)} (known: {', '.join(devices.KINDS)})"
        )
    return kinds


async def _run(args: argparse.Namespace, echo: Echo) -> None:
    kinds = _kinds(args.devices) if args.step == "check-admission" else []
    try:
        kube = await client.connect(args.kubeconfig)
    except errors.ConfigError as error:
        raise StepError(str(error)) from error
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(kube.close)
        if args.step == "apply-crds":
            await apply_crds(kube, field_manager=args.field_manager, echo=echo)
        elif args.step == "check-admission":
            await check_admission(kube, kinds, timeout=args.timeout, echo=echo)
        else:
            await cleanup(
                kube,
                args.namespace,
                selector=args.selector,
                secrets=args.secret,
                leases=args.lease,
                timeout=args.timeout,
                echo=echo,
            )


def main(argv: Sequence[str], parse_duration: Callable[[str], float], echo: Echo = print) -> int:
    """Run one step; a failure is one line and exit status 1 (a bad flag: argparse's 2)."""
    args = parser(parse_duration).parse_args(argv)
    try:
        asyncio.run(_run(args, echo))
    except (StepError, errors.KubeError) as error:
        echo(f"{args.step} failed: {error}")
        return FAILED
    return 0
