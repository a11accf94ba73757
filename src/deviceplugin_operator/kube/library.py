"""The parts of kubernetes-asyncio the client uses, loaded without the generated API models.

The library's package initialisers import every generated model and API class (about 850
modules, some 60 MiB of a ~95 MiB process) although the client sends raw JSON and never builds
a model. Here the packages ``kubernetes_asyncio`` and ``kubernetes_asyncio.client`` are put in
``sys.modules`` as plain packages over the installed directories, without running their
``__init__``, and only the configuration and the kubeconfig and in-cluster loaders are imported
from them; ``kubernetes_asyncio.client.models`` is an empty package (only model deserialisation
reads it). ``ApiClient`` (with its REST layer, ``dateutil``, ``six`` and ``multiprocessing``,
~30 modules and ~10 ms) is imported only when it is used: the kubeconfig loader imports the
name but builds one only in ``new_client_from_config``, which the operator does not call (its
client sends through its own aiohttp session), so it is given a stand-in that imports the real
class when called; any later ``kubernetes_asyncio.client.ApiClient`` is the real class.

The kubeconfig loader reads the file with PyYAML's pure-Python ``safe_load``: ~5 ms for a
kubeconfig with inline certificates (its scanner walks the base64 text character by
character), per client. Its module is given ``_LibyamlSafe`` as ``yaml``: the same documents
read by libyaml's ``CSafeLoader`` when PyYAML has it (0.2 ms).

The configuration module imports ``urllib3`` only to build a basic-auth header; loading it costs
~17 ms of every start-up. That module is given a stand-in (``_Deferred``) that imports
``urllib3`` on its first attribute access; ``sys.modules`` is left as it was, so every other
import of ``urllib3`` is the ordinary one.

When the library was imported normally before (a test, a plugin), that import is used as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys
import types
from typing import Any

import yaml


class _LibyamlSafe:
    """What the kubeconfig loader calls of ``yaml``, reading with libyaml when there is one."""

    @staticmethod
    def safe_load(stream: Any) -> Any:
        return yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader

    safe_dump = staticmethod(yaml.safe_dump)


def _api_client_class() -> Any:
    return importlib.import_module("kubernetes_asyncio.client.api_client").ApiClient


class _ApiClientOnFirstUse:
    """What the kubeconfig loader's module sees as ``ApiClient``: builds the real one."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _api_client_class()(*args, **kwargs)


class _ClientPackage(types.ModuleType):
    """``kubernetes_asyncio.client`` whose ``ApiClient`` is imported on first access."""

    def __getattr__(self, attribute: str) -> Any:
        if attribute == "ApiClient":
            real = _api_client_class()
            setattr(self, attribute, real)
            return real
        raise AttributeError(f"module {self.__name__!r} has no attribute {attribute!r}")


def _bare_package(
    name: str, directory: pathlib.Path, kind: type[types.ModuleType] = types.ModuleType
) -> types.ModuleType:
    package = kind(name)
    package.__path__ = [str(directory)]
    package.__package__ = name
    sys.modules[name] = package
    return package


class _Deferred(types.ModuleType):
    """A module imported on the first access to one of its attributes."""

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attribute)


def _import_with_deferred(module: str, deferred: str) -> types.ModuleType:
    """``module`` imported while ``deferred`` (not imported yet) is a ``_Deferred``."""
    if deferred in sys.modules:
        return importlib.import_module(module)
    sys.modules[deferred] = _Deferred(deferred)
    try:
        return importlib.import_module(module)
    finally:
        del sys.modules[deferred]


def load() -> tuple[Any, Any]:
    """(``kubernetes_asyncio.client``, ``kubernetes_asyncio.config``)."""
    if "kubernetes_asyncio" not in sys.modules:
        spec = importlib.util.find_spec("kubernetes_asyncio")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("kubernetes_asyncio is not installed")
        root = pathlib.Path(next(iter(spec.submodule_search_locations)))
        _bare_package("kubernetes_asyncio", root)
        client = _bare_package("kubernetes_asyncio.client", root / "client", _ClientPackage)
        _bare_package("kubernetes_asyncio.client.models", root / "client" / "models")
        configuration = _import_with_deferred("kubernetes_asyncio.client.configuration", "urllib3")
        setattr(client, "Configuration", configuration.Configuration)  # noqa: B010 - mypy: a bare module
        setattr(client, "ApiClient", _ApiClientOnFirstUse)  # noqa: B010 - idem
        try:
            config = importlib.import_module("kubernetes_asyncio.config")
        finally:
            delattr(client, "ApiClient")
        config.kube_config.yaml = _LibyamlSafe
        return client, config
    return importlib.import_module("kubernetes_asyncio.client"), importlib.import_module(
        "kubernetes_asyncio.config"
    )
