"""Sweeps on an existing Ray cluster: the address a launcher config connects to, a check that
something answers there before any job is dispatched, and ``recloop --check-cluster``, which runs
a tiny task on every node and compares its environment with the driver's.

hydra-ray-launcher retries an unreachable address forever, so :func:`check_reachable` opens one
TCP connection with a short timeout first. ``auto`` is resolved the way ``ray.init`` does it, kept
simple: ``RAY_ADDRESS``, else the file ``ray start --head`` leaves on this machine
(``$RAY_TMPDIR``/``$TMPDIR`` or ``/tmp``, then ``ray/ray_current_cluster``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from experiments.config import ConfigError

CONNECT_TIMEOUT_S = 5.0
GCS_TIMEOUT_S = 10.0  # then the Ray handshake
DEFAULT_PORT = 6379  # ray start --head's default GCS port
RAY_CLIENT_PORT = 10001  # ray://HOST without a port
# What every node must share with the driver (distributions, plus Python itself).
ENVIRONMENT = ("recloop", "Python", "hydra-core", "ray", "cloudpickle", "numpy", "implicit")
WHAT_TO_CHECK = (
    "is `ray start --head` running there, does a firewall block the port, "
    "is RAY_ADDRESS (or hydra.launcher.ray.init.address) right?"
)


def launcher_address(launcher: Mapping[str, Any]) -> str | None:
    """The cluster address a hydra-ray-launcher config connects to; ``None`` when it is not a
    Ray launcher or starts a local Ray of its own (no address, ``local``)."""
    if not str(launcher.get("_target_", "")).endswith(
        "hydra_ray_launcher.ray_launcher.RayLauncher"
    ):
        return None
    init = (launcher.get("ray") or {}).get("init") or {}
    address = init.get("address")
    if address is None:  # ray.init(address=None) still joins RAY_ADDRESS when it is set
        address = os.environ.get("RAY_ADDRESS") or None
    if address is None or str(address) == "local":
        return None
    return str(address)


def current_cluster_file() -> Path:
    """Where ``ray start --head`` records the address of the cluster it started."""
    tmp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return Path(tmp) / "ray" / "ray_current_cluster"


def resolve_auto(address: str) -> str:
    """``auto`` → ``RAY_ADDRESS``, else the current-cluster file; any other address unchanged."""
    if address != "auto":
        return address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    path = current_cluster_file()
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    raise ConfigError(
        f"Ray address 'auto': RAY_ADDRESS is not set and {path} does not exist (no "
        "`ray start --head` on this machine); set RAY_ADDRESS=HOST:PORT or "
        "hydra.launcher.ray.init.address=HOST:PORT"
    )


def host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``ray://HOST[:PORT]`` or ``HOST`` → (host, port)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        rest, scheme = address, ""
    rest = rest.rstrip("/")
    if rest.startswith("["):  # [IPv6]:PORT
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host, port = rest, ""
    default = RAY_CLIENT_PORT if scheme == "ray" else DEFAULT_PORT
    try:
        return host, int(port) if port else default
    except ValueError:
        raise ConfigError(f"Ray address {address!r}: expected HOST:PORT") from None


def use_token_if_available() -> None:
    """Send this user's Ray auth token when one exists and ``RAY_AUTH_MODE`` is unset.

    Since Ray 2.5x a local ``ray.init()`` writes ``~/.ray/auth_token``, and from then on
    ``ray start --head`` turns token authentication on; ``ray.init(address=HOST:PORT)`` does not
    (only ``auto`` does), so every job would fail "InvalidAuthToken". A token sent to a cluster
    without authentication is ignored, so sending it whenever there is one is safe."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(token_path) if token_path else Path.home() / ".ray" / "auth_token"
    if os.environ.get("RAY_AUTH_TOKEN") or path.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str:
    """Raise :class:`ConfigError` (one line: the address and what to check) unless a TCP
    connection to the cluster's address opens within ``timeout`` seconds; the resolved address."""
    resolved = resolve_auto(address)
    host, port = host_port(resolved)
    shown = resolved if resolved == address else f"{resolved} (from {address})"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return resolved
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(
            f"no Ray cluster answers at {shown} ({reason}; waited up to {timeout:g} s): {WHAT_TO_CHECK}"
        ) from None


def check_address(address: str) -> str:
    """Before ``ray.init``: something answers at ``address`` (:func:`check_reachable`) and it is
    a Ray cluster that accepts us (one request to its GCS, which fails at once where
    ``ray.init`` would retry for about 20 s and then raise). The resolved address."""
    resolved = check_reachable(address)
    use_token_if_available()  # before ray is imported: it reads RAY_AUTH_MODE once
    try:
        from ray._raylet import GcsClient  # private: skip the probe if it moves
    except ImportError:
        return resolved
    failure: list[BaseException] = []

    def probe() -> None:
        try:
            GcsClient(address=resolved)
        except Exception as exc:
            failure.append(exc)

    # A daemon thread, so a server that accepts and then stays silent cannot hold us up.
    thread = threading.Thread(target=probe, daemon=True)
    with _quiet_stderr() as still_quiet:  # ray's C++ client logs each failed attempt to fd 2
        thread.start()
        thread.join(GCS_TIMEOUT_S)
        if thread.is_alive():  # it will go on logging until the process ends
            still_quiet()
    if thread.is_alive():
        raise ConfigError(
            f"something answers at {resolved} but not as a Ray cluster (no reply within "
            f"{GCS_TIMEOUT_S:g} s); {WHAT_TO_CHECK}"
        )
    if failure:
        exc = failure[0]
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "auth" in type(exc).__name__.lower() or "AuthToken" in first:
            raise ConfigError(
                f"the Ray cluster at {resolved} refuses this driver ({first[:60]}): copy the "
                "head's ~/.ray/auth_token here or set RAY_AUTH_TOKEN, with RAY_AUTH_MODE unset or token"
            ) from None
        raise ConfigError(
            f"something answers at {resolved} but not as a Ray cluster ({first[:80]}); "
            f"{WHAT_TO_CHECK}"
        ) from None
    return resolved


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[Callable[[], None]]:
    """fd 2 to /dev/null inside the block; calling the yielded function keeps it there after
    the block and gives Python's ``sys.stderr`` its own copy of the real stderr instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    keep = []
    try:
        os.dup2(devnull, 2)
        yield lambda: keep.append(True)
    finally:
        if keep:
            sys.stderr = os.fdopen(saved, "w", buffering=1)
        else:
            os.dup2(saved, 2)
            os.close(saved)
        os.close(devnull)


def environment() -> dict[str, str]:
    """The versions :data:`ENVIRONMENT` lists, as this process sees them."""
    # Runs on every node as a Ray task, pickled by value: stdlib only, no recloop import (a node
    # without recloop must still answer, with "missing").
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"Python": platform.python_version()}
    for dist in ("recloop", "hydra-core", "ray", "cloudpickle", "numpy", "implicit"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = "missing"
    return found


def _node_probe() -> tuple[str, dict[str, str]]:
    import socket as _socket

    return _socket.gethostname(), environment()


def check_cluster(address: str) -> int:
    """Run :func:`_node_probe` on every alive node of the cluster at ``address``, print one
    row per node beside the driver's, and return 0 when every node matches, 1 otherwise."""
    resolved = check_address(address)
    import cloudpickle
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address=resolved, log_to_driver=False, logging_level="ERROR")
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        probe = ray.remote(num_cpus=0)(_node_probe)
        refs = [
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote()
            for n in nodes
        ]
        answers = ray.get(refs, timeout=120)
    finally:
        ray.shutdown()
    driver = environment()
    rows = [("driver", socket.gethostname(), driver)]
    rows += [
        (n["NodeManagerAddress"], host, env) for n, (host, env) in zip(nodes, answers, strict=True)
    ]
    print(version_table(rows, driver))
    differ = differences(rows[1:], driver)
    if differ:
        print(f"recloop: error: nodes differ from the driver: {'; '.join(differ)}", file=sys.stderr)
        return 1
    print(
        f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} at {resolved}: same environment as the driver"
    )
    return 0


Row = tuple[str, str, dict[str, str]]  # node address, host name, versions


def differences(rows: list[Row], driver: dict[str, str]) -> list[str]:
    """``NODE KEY VERSION ≠ DRIVER_VERSION`` for every version a node does not share."""
    return [
        f"{node} {key} {env.get(key, 'missing')} ≠ {driver[key]}"
        for node, _, env in rows
        for key in ENVIRONMENT
        if env.get(key, "missing") != driver[key]
    ]


def version_table(rows: list[Row], driver: dict[str, str]) -> str:
    """One aligned line per row; a version that differs from the driver's is marked ``≠``."""
    header = ["node", "host", *ENVIRONMENT]
    body = [
        [node, host, *(env[k] if env[k] == driver[k] else f"{env[k]} ≠" for k in ENVIRONMENT)]
        for node, host, env in rows
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    )
