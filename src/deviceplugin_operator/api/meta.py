"""Typed subsets of the Kubernetes meta and core types that our resources embed or reference.

Only the fields this operator reads or writes are modelled; the rest of an object is ignored on
parse. ``ResourceType`` names a resource the way the API server and the CRDs do.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Annotated, Any, Literal

import pydantic

from deviceplugin_operator.api import wire


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """Group, version and names of one custom resource type."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


class ObjectMeta(wire.Model):
    """The part of an object's metadata the operator uses."""

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None


class Toleration(wire.Model):
    """The pod this Toleration is attached to tolerates any taint that matches
    the triple <key,value,effect> using the matching operator <operator>."""

    key: str | None = None
    """Key is the taint key that the toleration applies to. Empty means match all taint keys.
    If the key is empty, operator must be Exists; this combination means to match all values and all keys."""  # noqa: E501

    operator: str | None = None
    """Operator represents a key's relationship to the value.
    Valid operators are Exists, Equal, Lt, and Gt. Defaults to Equal.
    Exists is equivalent to wildcard for value, so that a pod can
    tolerate all taints of a particular category."""

    value: str | None = None
    """Value is the taint value the toleration matches to.
    If the operator is Exists, the value should be empty, otherwise just a regular string."""

    effect: str | None = None
    """Effect indicates the taint effect to match. Empty means match all taint effects.
    When specified, allowed values are NoSchedule, PreferNoSchedule and NoExecute."""

    toleration_seconds: wire.Int64 | None = None
    """TolerationSeconds represents the period of time the toleration (which must be
    of effect NoExecute, otherwise this field is ignored) tolerates the taint. By default,
    it is not set, which means tolerate the taint forever (do not evict). Zero and
    negative values will be treated as 0 (evict immediately) by the system."""

    def pod_form(self) -> dict[str, Any]:
        """The toleration as the API server stores it in a pod spec: empty fields omitted."""
        return {key: value for key, value in self.wire().items() if value != ""}


class ObjectReference(wire.Model):
    """A reference to another object (core/v1 ObjectReference)."""

    api_version: str | None = None
    """API version of the referent."""

    field_path: str | None = None
    """If referring to a piece of an object instead of an entire object, this string
    should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]."""  # noqa: E501

    kind: str | None = None
    """Kind of the referent."""

    name: str | None = None
    """Name of the referent."""

    namespace: str | None = None
    """Namespace of the referent."""

    resource_version: str | None = None
    """Specific resourceVersion to which this reference is made, if any."""

    uid: str | None = None
    """UID of the referent."""


ConditionStatus = Literal["True", "False", "Unknown"]

_CONDITION_TYPE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
_CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(wire.Model):
    """Condition contains details for one aspect of the current state of this API Resource."""

    type: Annotated[str, pydantic.Field(max_length=316, pattern=_CONDITION_TYPE)]
    """Type of condition in CamelCase or in foo.example.com/CamelCase."""

    status: ConditionStatus
    """Status of the condition, one of True, False, Unknown."""

    observed_generation: Annotated[wire.Int64, pydantic.Field(ge=0)] | None = None
    """ObservedGeneration represents the .metadata.generation that the condition was set based upon."""  # noqa: E501

    last_transition_time: datetime.datetime
    """LastTransitionTime is the last time the condition transitioned from one status to another."""

    reason: Annotated[str, pydantic.Field(min_length=1, max_length=1024, pattern=_CONDITION_REASON)]
    """Reason contains a programmatic identifier indicating the reason for the condition's last transition."""  # noqa: E501

    message: Annotated[str, pydantic.Field(max_length=32768)]
    """Message is a human readable message indicating details about the transition."""
