"""aiohttp imported without the import-time work the operator never uses.

* **The default TLS contexts' CA bundles, loaded off the start-up path.** ``aiohttp.connector``
  creates two default SSL contexts when it is imported, and each loads the system's CA bundle:
  ~50 ms of CPU together. The operator never uses them (its API client brings a context of its
  own, its servers too). aiohttp is imported here with that load deferred (``SSLContext``'s
  ``set_default_verify_paths`` recorded instead of run), and a thread loads the bundles into
  those same contexts ``LOAD_AFTER`` seconds later, once the start-up is over. A thread that
  loaded them at once still took that CPU from the start-up, on two cores shared with the API
  server (measured: the process's CPU over its first second 490 -> 370 ms without it). Until
  they are loaded, a request on a default context would fail verification, never pass it.
  When aiohttp was imported before, nothing is done.
* **No system MIME table.** ``aiohttp.web_fileresponse`` builds a ``mimetypes.MimeTypes`` when
  it is imported, which reads the system's ``mime.types`` (~2,000 types: ~5 ms and ~0.35 MiB
  that stay). The operator serves no files: ``mimetypes`` is initialised here with Python's
  built-in table only, unless it was initialised before; a later explicit
  ``mimetypes.init()`` still reads the system's files.

cli.py imports this module before anything else imports aiohttp.
"""

from __future__ import annotations

import importlib
import mimetypes
import ssl
import sys
import threading

LOAD_AFTER = 2.0
"""Seconds from the import to the loading of the bundles."""

deferred: list[ssl.SSLContext] = []
"""The contexts whose CA bundle is loaded by ``loading``."""

loading: threading.Timer | None = None
"""The thread that loads them, after ``LOAD_AFTER`` seconds (None when nothing was deferred)."""


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
        loading = threading.Timer(LOAD_AFTER, _load, args=(deferred,))
        loading.name, loading.daemon = "ca-bundles", True
        loading.start()


def _builtin_mime_types() -> None:
    if mimetypes.inited:
        return
    system_files = mimetypes.knownfiles
    mimetypes.knownfiles = []
    try:
        mimetypes.init()
    finally:
        mimetypes.knownfiles = system_files


_builtin_mime_types()
_import_aiohttp()
