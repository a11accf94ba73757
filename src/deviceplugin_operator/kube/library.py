"""The parts of kubernetes-asyncio the client uses, loaded without the generated API models.

The library's package initialisers import every generated model and API class (about 850
modules, some 60 MiB of a ~95 MiB process) although the client sends raw JSON and never builds
a model. Here the packages ``kubernetes_asyncio`` and ``kubernetes_asyncio.client`` are put in
``sys.modules`` as plain packages over the installed directories, without running their
``__init__``, and only the configuration, the REST layer, ``ApiClient`` and the kubeconfig and
in-cluster loaders are imported from them; ``kubernetes_asyncio.client.models`` is an empty
package (only model deserialisation reads it). When the library was imported normally before
(a test, a plugin), that import is used as it is.
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
        for module, name in (("configuration", "Configuration"), ("api_client", "ApiClient")):
            loaded = importlib.import_module(f"kubernetes_asyncio.client.{module}")
            setattr(client, name, getattr(loaded, name))
    client = importlib.import_module("kubernetes_asyncio.client")
    config = importlib.import_module("kubernetes_asyncio.config")
    exceptions = importlib.import_module("kubernetes_asyncio.client.exceptions")
    return client, config, exceptions
