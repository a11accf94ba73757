"""The parts of kubernetes-asyncio the client uses, loaded without the generated API models.

The library's package initialisers import every generated model and API class (about 850
modules, some 60 MiB of a ~95 MiB process) although the client sends raw JSON and never builds
a model. Here the packages ``kubernetes_asyncio`` and ``kubernetes_asyncio.client`` are put in
``sys.modules`` as plain packages over the installed directories, without running their
``__init__``, and only the configuration, the REST layer, ``ApiClient`` and the kubeconfig and
in-cluster loaders are imported from them; ``kubernetes_asyncio.client.models`` is an empty
package (only model deserialisation reads it). When the library was imported normally before
(a test, a plugin), that import is used as it is.

The configuration module imports ``urllib3`` only to build a basic-auth header; loading it costs
~17 ms of every start-up. That module is given a stand-in (``_Deferred``) that imports
``urllib3`` on its first attribute access; ``sys.modules`` is left as it was, so every other
import of ``urllib3`` is the ordinary one.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys
import types
from typing import Any


def _bare_package(name: str, directory: pathlib.Path) -> types.ModuleType:
    package = types.ModuleType(name)
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


def load() -> tuple[Any, Any, Any]:
    """(``kubernetes_asyncio.client``, ``kubernetes_asyncio.config``, the client's
    ``exceptions`` module)."""
    if "kubernetes_asyncio" not in sys.modules:
        spec = importlib.util.find_spec("kubernetes_asyncio")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("kubernetes_asyncio is not installed")
        root = pathlib.Path(next(iter(spec.submodule_search_locations)))
        _bare_package("kubernetes_asyncio", root)
        client = _bare_package("kubernetes_asyncio.client", root / "client")
        _bare_package("kubernetes_asyncio.client.models", root / "client" / "models")
        configuration = _import_with_deferred("kubernetes_asyncio.client.configuration", "urllib3")
        api_client = importlib.import_module("kubernetes_asyncio.client.api_client")
        setattr(client, "Configuration", configuration.Configuration)  # noqa: B010 - mypy: a bare module
        setattr(client, "ApiClient", api_client.ApiClient)  # noqa: B010 - idem
    client = importlib.import_module("kubernetes_asyncio.client")
    config = importlib.import_module("kubernetes_asyncio.config")
    exceptions = importlib.import_module("kubernetes_asyncio.client.exceptions")
    return client, config, exceptions
