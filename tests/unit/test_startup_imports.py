"""What ``deviceplugin-operator run`` loads before it starts: only what it runs.

Each check imports ``deviceplugin_operator.cli`` in a fresh interpreter (the test process has
long imported everything) and reads ``sys.modules`` and the models' state there. The modules
named here are the ones the start-up profile (docs/benchmarks.md, "Start-up: where the time
goes") showed as costly and unused by ``run``.
"""

from __future__ import annotations

import importlib.resources
import json
import subprocess
import sys

import pytest
import yaml

import fresh_interpreter
from deviceplugin_operator import devices
from deviceplugin_operator.devices import kind

NOT_LOADED_BY_RUN = (
    "deviceplugin_operator.inspection.running",
    "deviceplugin_operator.inspection.bundling",
    "deviceplugin_operator.inspection.diagnosis",
    "deviceplugin_operator.manifests.lifecycle",
    "deviceplugin_operator.manifests.crd",
    "tarfile",
    "urllib3",
    # kubernetes-asyncio's ApiClient: the client sends through its own session (kube/library.py)
    "kubernetes_asyncio.client.api_client",
    "dateutil",
    "multiprocessing",
)


@pytest.mark.parametrize("module", NOT_LOADED_BY_RUN)
def test_importing_the_cli_leaves_out_what_run_does_not_use(module: str) -> None:
    loaded = fresh_interpreter.run_json(
        f"""
        import json, sys
        import deviceplugin_operator.cli
        print(json.dumps({module!r} in sys.modules))
        """
    )
    assert loaded is False, f"{module} is imported with the cli"


def test_no_model_builds_its_validator_at_import() -> None:
    built = fresh_interpreter.run_json(
        """
        import json
        import deviceplugin_operator.cli
        from deviceplugin_operator.api import wire

        def models(cls):
            for sub in cls.__subclasses__():
                yield sub
                yield from models(sub)

        print(json.dumps(sorted(
            m.__qualname__ for m in models(wire.Model) if m.__pydantic_complete__
        )))
        """
    )
    assert built == []


def test_the_client_library_still_builds_basic_auth_headers() -> None:
    """``urllib3``, deferred for the configuration module, loads on its first use there."""
    result = fresh_interpreter.run_json(
        """
        import json, sys
        from deviceplugin_operator.kube import client
        before = "urllib3" in sys.modules
        configuration = client.k8s_client.Configuration()
        configuration.username, configuration.password = "admin", "secret"
        print(json.dumps([before, configuration.get_basic_auth_token(), "urllib3" in sys.modules]))
        """
    )
    assert result == [False, "Basic YWRtaW46c2VjcmV0", True]


def test_the_client_library_still_builds_an_api_client_when_asked() -> None:
    """``ApiClient``, left out of the start, is the library's own class on first use, both
    from the package and through the kubeconfig loader's ``new_client_from_config``."""
    result = fresh_interpreter.run_json(
        """
        import asyncio, json, sys
        from deviceplugin_operator.kube import client
        from kubernetes_asyncio.config import kube_config
        before = "kubernetes_asyncio.client.api_client" in sys.modules

        async def build():
            built = kube_config.ApiClient(configuration=client.k8s_client.Configuration(host="h"))
            await built.close()
            return built

        built = asyncio.run(build())
        real = client.k8s_client.ApiClient
        print(json.dumps([before, type(built) is real, real.__module__, built.configuration.host]))
        """
    )
    assert result == [False, True, "kubernetes_asyncio.client.api_client", "h"]


def test_inspection_commands_still_run_from_the_cli() -> None:
    """``render`` goes through the lazily imported runner (offline: no cluster needed)."""
    run = subprocess.run(
        [sys.executable, "-m", "deviceplugin_operator.cli", "render", "-f", "-", "-o", "json"],
        input="apiVersion: deviceplugin.intel.com/v1\nkind: GpuDevicePlugin\n"
        "metadata: {name: g}\nspec: {image: intel/intel-gpu-plugin:0.36.0}\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["items"][0]["metadata"]["name"] == "intel-gpu-plugin-g"


@pytest.mark.parametrize("name", sorted(devices.KINDS))
def test_templates_read_by_libyaml_are_what_the_python_loader_reads(name: str) -> None:
    """The base DaemonSets are loaded with libyaml when PyYAML has it (start-up time)."""
    text = (
        importlib.resources.files("deviceplugin_operator.devices")
        .joinpath("templates", f"{name}.yaml")
        .read_text(encoding="utf-8")
    )
    assert kind._template(name) == yaml.safe_load(text)


def test_the_first_validator_looks_for_no_pydantic_plugin() -> None:
    """``run`` turns pydantic's plugin discovery off (a scan of every installed distribution's
    metadata on the first validation, in the time to the first DaemonSet) unless the
    environment sets it: then the administrator's value is kept."""
    result = fresh_interpreter.run_json(
        """
        import json, os
        from deviceplugin_operator import cli, devices
        from deviceplugin_operator.reconcile import validation
        from pydantic.plugin import _loader

        kept = {"PYDANTIC_DISABLE_PLUGINS": ""}
        cli.without_pydantic_plugins(kept)
        os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)
        cli.without_pydantic_plugins(os.environ)
        validation.parse(devices.KINDS["gpu"], {"metadata": {"name": "g"}, "spec": {}})
        print(json.dumps([kept, os.environ["PYDANTIC_DISABLE_PLUGINS"], _loader._plugins]))
        """
    )
    assert result == [{"PYDANTIC_DISABLE_PLUGINS": ""}, "__all__", None]


def test_naming_every_kinds_plugins_parses_no_template() -> None:
    """The informers' label selector names the DaemonSets of all eight kinds at start-up; the
    templates are parsed only when a kind is first reconciled."""
    parsed = fresh_interpreter.run_json(
        """
        import json
        from deviceplugin_operator import devices, manager
        from deviceplugin_operator.devices import kind
        selector = manager.plugin_label_selector(sorted(devices.KINDS))
        print(json.dumps([selector, kind._template.cache_info().currsize]))
        """
    )
    assert parsed == [
        "app in (intel-dlb-plugin,intel-dsa-plugin,intel-fpga-plugin,intel-gpu-plugin,"
        "intel-iaa-plugin,intel-npu-plugin,intel-qat-plugin,intel-sgx-plugin)",
        0,
    ]


def test_the_imports_collect_only_the_youngest_generation_and_restore_the_thresholds() -> None:
    """The cli's imports run without collecting the older generations (start-up time), the
    youngest still collected (the imports' garbage); what they leave is frozen, and the
    collector's thresholds are the default ones again afterwards."""
    result = fresh_interpreter.run_json(
        """
        import gc, json, sys
        during_cli = []

        def seen(phase, info):
            # a collection while cli.py's module body runs (i.e. during its imports)
            frame = sys._getframe(1)
            while frame is not None:
                if frame.f_code.co_name == "<module>" and frame.f_globals.get(
                    "__name__"
                ) == "deviceplugin_operator.cli":
                    if phase == "start":
                        during_cli.append(info["generation"])
                    break
                frame = frame.f_back

        thresholds = gc.get_threshold()
        gc.callbacks.append(seen)
        import deviceplugin_operator.cli
        gc.callbacks.remove(seen)
        frozen = gc.get_freeze_count()
        garbage = [[] for _ in range(100)]
        for cycle in garbage:
            cycle.append(cycle)
        del garbage, cycle
        print(json.dumps({
            "during_cli": during_cli,
            "frozen": frozen,
            "restored": gc.get_threshold() == thresholds,
            "collected": gc.collect(),
        }))
        """
    )
    assert isinstance(result, dict)
    assert result["during_cli"], "the youngest generation is collected"
    assert set(result["during_cli"]) == {0}
    assert result["frozen"] > 10_000
    assert result["restored"] is True
    assert result["collected"] >= 100


def test_aiohttp_file_responses_get_the_builtin_mime_table_not_the_systems() -> None:
    """The MIME table is Python's built-in one after the imports (the system's ``mime.types``
    not read: the operator serves no files); an explicit ``mimetypes.init()`` afterwards
    still reads the system's files."""
    result = fresh_interpreter.run_json(
        """
        import json, mimetypes, os
        import deviceplugin_operator.cli
        from aiohttp import web_fileresponse
        system = [path for path in mimetypes.knownfiles if os.path.isfile(path)]
        at_start = len(mimetypes.types_map)
        json_type = web_fileresponse.CONTENT_TYPES.guess_type("a.json")[0]
        mimetypes.init()
        print(json.dumps([
            system != [], len(mimetypes._types_map_default), at_start, json_type,
            len(mimetypes.types_map),
        ]))
        """
    )
    assert isinstance(result, list)
    has_system_files, builtin, at_start, json_type, after_init = result
    assert at_start == builtin
    assert json_type == "application/json"
    if has_system_files:
        assert after_init > builtin


def test_aiohttp_default_contexts_get_the_ca_bundle_after_the_start() -> None:
    """cli.py imports aiohttp through aiohttp_defaults: the two default contexts are created
    without the system CA bundle, which a thread loads into them ``LOAD_AFTER`` seconds
    later, once the start-up is over."""
    result = fresh_interpreter.run_json(
        """
        import json, ssl, time
        started = time.monotonic()
        import deviceplugin_operator.cli
        from aiohttp import connector
        from deviceplugin_operator import aiohttp_defaults
        contexts = [connector._SSL_CONTEXT_VERIFIED, connector._SSL_CONTEXT_UNVERIFIED]
        at_import = [c.cert_store_stats()["x509"] for c in contexts]
        imported_in = time.monotonic() - started
        deferred = [any(c is d for d in aiohttp_defaults.deferred) for c in contexts]
        aiohttp_defaults.loading.join()
        print(json.dumps({
            "at_import": at_import,
            "imported_in": imported_in,
            "after": aiohttp_defaults.LOAD_AFTER,
            "deferred": deferred,
            "loaded": [c.cert_store_stats() for c in contexts],
            "system": ssl.create_default_context().cert_store_stats(),
            "restored": "set_default_verify_paths" not in vars(ssl.SSLContext),
        }))
        """
    )
    assert isinstance(result, dict)
    assert result["deferred"] == [True, True]
    # Empty until LOAD_AFTER (an import slower than that on a loaded machine may see them).
    if result["imported_in"] < result["after"]:
        assert result["at_import"] == [0, 0]
    assert result["loaded"] == [result["system"], result["system"]]
    assert result["restored"] is True
