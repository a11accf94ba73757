"""Container image references and the image upgrade policy (shared with admission).

``ImageRef`` parses references with the distribution grammar (registry with port, path, tag,
digest, ``name:tag@sha256:...``), where the reference split on the first colon and mistook a
registry port for a tag. ``Version`` is Kubernetes' semantic version (``ParseSemantic``) with
its error messages, which the validating webhook repeats.

The upgrade policy (reference §4.7, done right): an image whose tag is a semantic version below
the operator's minimum is raised to the minimum, keeping its registry and path; an image pinned
by digest is left alone. A ``<BASENAME>_SHA`` override (an OLM-pinned reference) replaces the
image only when it names an image with the same basename, so a stray variable can never swap
one plugin for another.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping
from typing import TypeVar

from deviceplugin_operator.api import plugin
from deviceplugin_operator.devices import kind

_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
_NAME_MAX = 255

_NO_OVERRIDES: Mapping[str, str] = types.MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: ``[registry/]path[:tag][@digest]``."""

    registry: str | None
    """Registry host with optional port, e.g. ``my.reg:5000``; None for Docker Hub shorthand."""

    path: str
    """Repository path inside the registry, e.g. ``intel/intel-gpu-plugin``."""

    tag: str | None = None
    digest: str | None = None
    """``algorithm:hex``, e.g. ``sha256:...``."""

    @classmethod
    def parse(cls, reference: str) -> ImageRef:
        """Parse a reference; ValueError says what is wrong with it."""
        remainder, _, digest = reference.partition("@")
        if digest and not (_DIGEST.match(digest) and _digest_length_ok(digest)):
            raise ValueError(f"invalid digest {digest!r} in image reference {reference!r}")
        name, tag = remainder, None
        colon = remainder.rfind(":")
        if colon > remainder.rfind("/"):
            name, tag = remainder[:colon], remainder[colon + 1 :]
            if not _TAG.match(tag):
                raise ValueError(f"invalid tag {tag!r} in image reference {reference!r}")
        registry, path = _split_registry(name)
        if registry is not None and not _DOMAIN.match(registry):
            raise ValueError(f"invalid registry {registry!r} in image reference {reference!r}")
        if not path or not all(_PATH_COMPONENT.match(part) for part in path.split("/")):
            raise ValueError(f"invalid repository name in image reference {reference!r}")
        if len(name) > _NAME_MAX:
            raise ValueError(f"repository name longer than {_NAME_MAX} characters: {reference!r}")
        return cls(registry=registry, path=path, tag=tag, digest=digest or None)

    @property
    def name(self) -> str:
        """The image's basename, e.g. ``intel-gpu-plugin``."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def repository(self) -> str:
        """Registry and path, without tag or digest."""
        return f"{self.registry}/{self.path}" if self.registry else self.path

    def with_tag(self, tag: str) -> ImageRef:
        """The same repository at another tag (a digest would contradict the new tag)."""
        return dataclasses.replace(self, tag=tag, digest=None)

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def _digest_length_ok(digest: str) -> bool:
    algorithm, _, encoded = digest.partition(":")
    if algorithm == "sha256":
        return bool(_SHA256.match(digest))
    return len(encoded) >= 32


def _split_registry(name: str) -> tuple[str | None, str]:
    # Docker's rule: the first component names a registry only if it looks like a host.
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return None, name


_VERSION = re.compile(r"^\s*v?([0-9]+(?:\.[0-9]+)*)(.*)$", re.S)
_EXTRA = re.compile(
    r"^(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?\s*$"
)


@dataclasses.dataclass(frozen=True)
class Version:
    """A semantic version as Kubernetes' ``version.ParseSemantic`` reads it (leading v allowed)."""

    major: int
    minor: int
    patch: int
    pre_release: str = ""
    build_metadata: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``text``; the ValueError message is Kubernetes' own wording."""
        match = _VERSION.match(text)
        if match is None:
            raise ValueError(f'could not parse "{text}" as version')
        numbers, extra = match.group(1), match.group(2)
        components = numbers.split(".")
        if len(components) != 3:
            raise ValueError(f'illegal version string "{text}"')
        for component in components:
            if component.startswith("0") and component != "0":
                raise ValueError(
                    f'illegal zero-prefixed version component "{component}" in "{text}"'
                )
        pre_release = build = ""
        if extra:
            extra_match = _EXTRA.match(extra)
            if extra_match is None:
                raise ValueError(
                    f'could not parse pre-release/metadata ({extra}) in version "{text}"'
                )
            pre_release, build = extra_match.group(1) or "", extra_match.group(2) or ""
            for identifier in pre_release.split("."):
                if identifier.isdigit() and identifier.startswith("0") and identifier != "0":
                    raise ValueError(
                        f'illegal zero-prefixed version component "{identifier}" in "{text}"'
                    )
        major, minor, patch = (int(component) for component in components)
        return cls(major, minor, patch, pre_release, build)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release sorts after its pre-releases; numeric identifiers before alphanumeric ones.
        identifiers = tuple(
            (0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in self.pre_release.split(".")
            if self.pre_release
        )
        return (self.major, self.minor, self.patch, 0 if self.pre_release else 1, identifiers)

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Version) -> bool:
        return self._key() <= other._key()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre_release:
            text += f"-{self.pre_release}"
        if self.build_metadata:
            text += f"+{self.build_metadata}"
        return text


def override_variable(image_name: str) -> str:
    """The environment variable that pins an image basename: ``intel-gpu-plugin`` ->
    ``INTEL_GPU_PLUGIN_SHA``."""
    return image_name.upper().replace("-", "_").replace(".", "_") + "_SHA"


def upgraded_image(
    image: str,
    *,
    overrides: Mapping[str, str] = _NO_OVERRIDES,
    min_version: str = kind.IMAGE_MIN_VERSION,
) -> tuple[str, str | None]:
    """The image to run instead of ``image`` and why, or ``(image, None)`` to keep it.

    ``overrides`` maps ``<BASENAME>_SHA`` variable names to pinned references (Settings).
    References that do not parse are kept as they are: validating them is admission's job.
    """
    try:
        ref = ImageRef.parse(image)
    except ValueError:
        return image, None

    variable = override_variable(ref.name)
    pinned = overrides.get(variable)
    if pinned == image:
        return image, None
    if pinned and _names_image(pinned, ref.name):
        return pinned, f"Replaced image {image} by {pinned} from {variable}"

    if ref.digest is not None or ref.tag is None:
        return image, None
    try:
        version = Version.parse(ref.tag)
    except ValueError:
        return image, None
    if version < Version.parse(min_version):
        raised = str(ref.with_tag(min_version))
        return raised, f"Raised image {image} to the minimum version {min_version}"
    return image, None


def _names_image(reference: str, name: str) -> bool:
    try:
        return ImageRef.parse(reference).name == name
    except ValueError:
        return False


SpecT = TypeVar("SpecT", bound=plugin.DevicePluginSpec)


def upgraded_spec(
    spec: SpecT,
    *,
    overrides: Mapping[str, str] = _NO_OVERRIDES,
    min_version: str = kind.IMAGE_MIN_VERSION,
) -> tuple[SpecT, tuple[str, ...]]:
    """``spec`` with ``image`` and ``initImage`` upgraded, and the reasons for each change."""
    changes: dict[str, str] = {}
    reasons: list[str] = []
    fields = ["image"]
    if isinstance(spec, plugin.DevicePluginSpecWithInitImage):
        fields.append("init_image")
    for field in fields:
        current = getattr(spec, field)
        if not current:
            continue
        new, reason = upgraded_image(current, overrides=overrides, min_version=min_version)
        if reason is not None:
            changes[field] = new
            reasons.append(reason)
    if not changes:
        return spec, ()
    return spec.model_copy(update=changes), tuple(reasons)
