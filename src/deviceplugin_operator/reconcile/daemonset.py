"""The whole desired DaemonSet of one device plugin resource, as a pure function.

``desired_daemonset`` starts from the kind's base template (the reference's
``deployments/<dev>_plugin/base``), applies what every kind shares (name, namespace, labels,
owner, image, args, nodeSelector, tolerations, pull secret) and then the kind's
``customize_pod`` hook. The controller applies the result as it is; there is no field-by-field
drift code, so everything below holds on every reconcile, not just on create.

Deliberate deviations from the reference operator, each for a reason:

* DaemonSet ``metadata.labels`` also carry ``app.kubernetes.io/{name,instance,managed-by,
  component}``, so ``kubectl -l app.kubernetes.io/instance=<cr>`` finds one resource's
  DaemonSet. The selector and the pod template keep exactly ``{app: intel-<dev>-plugin}``:
  selectors are immutable and a changed pod template would restart every adopted pod. The
  instance label is left out when the resource name is not a valid label value (over 63
  characters), rather than making the DaemonSet invalid.
* An empty ``spec.image`` renders the kind's default image (what the defaulting webhook would
  have stored) instead of a container without an image, so resources created while webhooks
  are off still run.
* Image upgrades (``images.upgraded_spec``) are applied while rendering, so the DaemonSet never
  runs an image below the minimum version whether or not the resource was rewritten.
* FPGA: ``initImage`` is used from the first render (the reference created the DaemonSet with
  the base template's ``devel`` init image and fixed it on the next reconcile). Without an
  ``initImage`` there is no init container and no ``intel-fpga-sw`` volume (the reference
  rendered an init container with an empty image, which the API server rejects).
* GPU: without ``initImage`` there is no ``nfd-sources`` volume (the reference removed a volume
  named ``nfd-features`` and left ``nfd-sources`` behind).
* DSA with ``driver: vfio-pci`` mounts the host's ``/dev/vfio`` at ``/dev/vfio`` in the plugin
  container (the reference changed only the host path, a range-copy bug).
* DSA/IAA: a ``provisioningConfig`` added later reaches the DaemonSet (whole-object rendering).
* QAT: ``ENABLED_QAT_PF_PCIIDS`` always follows ``kernelVfDrivers`` and ``6xxxvf`` maps to PF
  id ``4948`` (the reference's map lacked it and never refreshed the variable).
* IAA: ``kubernetes.io/arch: amd64`` is added to a user's nodeSelector from the first render
  (unless the user set that key); the reference added it, overriding the user's value, only
  from its second reconcile on. Other kinds replace the default selector as before.
* Empty or absent ``tolerations`` render no ``tolerations`` key, so nil and ``[]`` never differ;
  tolerations fields that are empty strings are dropped as the API server would.
* ``imagePullSecrets`` follow the settings on every render (the reference set them on create).
* ConfigMap volumes state ``defaultMode`` (420 for DSA/IAA, 0440 = 288 for QAT) so the object
  the API server stores equals ours.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from deviceplugin_operator import devices, settings
from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import podspec
from deviceplugin_operator.reconcile import images

MANAGED_BY = "intel-deviceplugin-operator"
"""Value of ``app.kubernetes.io/managed-by`` on every DaemonSet this operator renders."""

_NAME_MAX = 253
_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

SpecT = TypeVar("SpecT", bound=plugin.DevicePluginSpec)


class RenderError(ValueError):
    """The resource cannot be turned into a valid DaemonSet; terminal until the resource
    changes."""


def daemonset_name(kind: devices.DeviceKind[Any], cr_name: str) -> str:
    """The DaemonSet of resource ``cr_name``: ``intel-<dev>-plugin-<cr_name>``."""
    return f"{kind.base_name}-{cr_name}"


def desired_daemonset(
    kind: devices.DeviceKind[SpecT],
    cr_name: str,
    cr_uid: str,
    spec: SpecT,
    settings: settings.Settings,
) -> dict[str, Any]:
    """The complete DaemonSet for resource ``cr_name`` (uid ``cr_uid``) with ``spec``.

    Raises RenderError when the result could not be valid.
    """
    name = daemonset_name(kind, cr_name)
    if len(name) > _NAME_MAX:
        raise RenderError(f"DaemonSet name {name!r} is longer than {_NAME_MAX} characters")
    spec = spec.model_copy(update={"image": spec.image or kind.default_image})
    spec, _ = images.upgraded_spec(spec, overrides=settings.image_overrides)

    daemonset = kind.template
    metadata = daemonset["metadata"]
    metadata["name"] = name
    metadata["namespace"] = settings.plugin_namespace
    metadata["labels"] = {**metadata.get("labels", {}), **_recommended_labels(kind, cr_name)}
    metadata["ownerReferences"] = [
        {
            "apiVersion": plugin.API_VERSION,
            "kind": kind.kind,
            "name": cr_name,
            "uid": cr_uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]

    pod = daemonset["spec"]["template"]["spec"]
    container = podspec.main_container(pod)
    container["image"] = spec.image
    container["args"] = ["-v", str(spec.log_level or 0), *kind.plugin_args(spec)]

    selector = dict(spec.node_selector or pod["nodeSelector"])
    for key, value in kind.required_node_selector.items():
        selector.setdefault(key, value)
    pod["nodeSelector"] = selector
    if spec.tolerations:
        pod["tolerations"] = [toleration.pod_form() for toleration in spec.tolerations]
    if settings.image_pull_secret:
        pod["imagePullSecrets"] = [{"name": settings.image_pull_secret}]
    if settings.plugin_service_account:
        # The reference runs plugins as `default`, bound to the operator's own write role.
        pod["serviceAccountName"] = settings.plugin_service_account
        pod["automountServiceAccountToken"] = False
    if kind.customize_pod is not None:
        kind.customize_pod(pod, spec)
    return daemonset


def _recommended_labels(kind: devices.DeviceKind[Any], cr_name: str) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": kind.base_name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/component": "device-plugin",
    }
    if len(cr_name) <= 63 and _LABEL_VALUE.match(cr_name):
        labels["app.kubernetes.io/instance"] = cr_name
    return labels
