"""aiohttp imported with its default TLS contexts' CA bundles loaded off the start-up path.

``aiohttp.connector`` creates two default SSL contexts when it is imported, and each loads the
system's CA bundle: ~40 ms together, a tenth of the operator's start-up. The operator never
uses them (its API client brings a context of its own, its servers too). cli.py imports this
module first: aiohttp is imported here with that load deferred (``SSLContext``'s
``set_default_verify_paths`` recorded instead of run), and a thread then loads the bundles into
those same contexts, in parallel with the rest of the start-up (OpenSSL reads them without
holding the GIL). Until it is done, a request on a default context would fail verification,
never pass it. When aiohttp was imported before, nothing is done.
"""

from __future__ import annotations

import importlib
import ssl
import sys
import threading

deferred: list[ssl.SSLContext] = []
"""The contexts whose CA bundle is loaded by ``loading``."""

loading: threading.Thread | None = None
"""The thread that loads them (None when nothing was deferred)."""


def _record(context: ssl.SSLContext) -> None:
    deferred.append(context)


def _load(contexts: list[ssl.SSLContext]) -> None:
    for context in contexts:
        context.set_default_verify_paths()


def _import_aiohttp() -> None:
    global loading  # noqa: PLW0603 - set once, at import
    if "aiohttp" in sys.modules or "set_default_verify_paths" in vars(ssl.SSLContext):
        return
    # Shadows the C method on the Python subclass for the import only; deleting the shadow
    # brings the method back for everyone.
    setattr(ssl.SSLContext, "set_default_verify_paths", _record)  # noqa: B010 - see above
    try:
        importlib.import_module("aiohttp")
    finally:
        delattr(ssl.SSLContext, "set_default_verify_paths")
    if deferred:
        loading = threading.Thread(target=_load, args=(deferred,), name="ca-bundles", daemon=True)
        loading.start()


_import_aiohttp()
