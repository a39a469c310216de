"""What fleet assumes of Ray beyond its public API (reconciler/engines/ray/compat.py), checked
against the installed Ray, so an upgrade that breaks an assumption fails here first."""
from __future__ import annotations

import inspect
import io
import re
import threading
import tomllib
from pathlib import Path

import pytest

from reconciler.engines.ray import compat

ray = pytest.importorskip("ray")


def test_the_installed_ray_is_a_tested_release_and_pyproject_allows_only_those() -> None:
    assert compat.tested(ray.__version__), ray.__version__
    deps = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["ray"]
    [spec] = deps
    low, high = re.fullmatch(r"ray\[default\]>=(\d+\.\d+),<(\d+\.\d+)", spec).groups()  # type: ignore[union-attr]
    assert [tuple(map(int, low.split(".")))] == list(compat.TESTED)
    assert tuple(map(int, high.split("."))) == (compat.TESTED[-1][0], compat.TESTED[-1][1] + 1)


def test_ray_prints_cluster_messages_on_stdout_from_the_threads_compat_names() -> None:
    from ray._private import worker  # read, never patched: the assumption itself is what is checked

    source = inspect.getsource(worker)
    for name in compat.RAY_THREADS:
        assert f'name="{name}"' in source, name
    printer = inspect.getsource(worker.print_to_stdstream)
    assert "sink = sys.stdout" in printer  # looked up at each print: a wrapped sys.stdout is what it writes to
    assert "print_to_stdstream(" in inspect.getsource(worker.listen_error_messages)


def test_writes_from_rays_threads_go_to_stderr_and_the_rest_to_stdout() -> None:
    out, err = io.StringIO(), io.StringIO()
    routed = compat.RayToStderr(out, err)  # type: ignore[arg-type]
    routed.write("fleet's own output\n")
    for name in compat.RAY_THREADS:
        thread = threading.Thread(target=routed.write, args=(f"from {name}\n",), name=name)
        thread.start()
        thread.join()
    other = threading.Thread(target=routed.write, args=("a worker thread of fleet\n",), name="ThreadPoolExecutor-0_0")
    other.start()
    other.join()
    assert out.getvalue() == "fleet's own output\na worker thread of fleet\n"
    assert err.getvalue() == "".join(f"from {name}\n" for name in compat.RAY_THREADS)


def test_rays_failure_signal_handler_can_be_left_out_by_environment() -> None:
    from ray._private import ray_constants

    assert f'"{compat.NO_FAILURE_HANDLER}"' in inspect.getsource(ray_constants)


def test_a_loopback_node_ip_is_kept_by_the_environment_compat_sets() -> None:
    """compat.keep_loopback: Ray's switch is read from that variable at import, and with it off a
    node's IP is the loopback one rather than the machine's outward IP (the driver test that
    connects with it is tests/test_ray_engine.py::test_a_driver_connects_to_a_loopback_cluster_with_no_private_api)."""
    from ray._private import ray_constants, services

    assert ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR == compat.LOOPBACK_CLUSTER
    assert f"{compat.LOOPBACK_CLUSTER}" in inspect.getsource(ray_constants)
    source = inspect.getsource(services.get_node_ip_address)
    assert "if not ray_constants.ENABLE_RAY_CLUSTER:" in source and "return get_localhost_ip()" in source
    assert "return get_node_ip_address()" in inspect.getsource(services.resolve_ip_for_localhost)


def test_the_head_node_resource_is_the_one_ray_gives_its_head() -> None:
    """compat.HEAD_RESOURCE: the control actor's placement (tests/test_ray_engine.py checks it lands there)."""
    from ray._common import constants

    assert constants.HEAD_NODE_RESOURCE_NAME == compat.HEAD_RESOURCE
