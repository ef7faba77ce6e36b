"""Sweeps on an existing Ray cluster: the address a launcher config connects to, a check that
something answers there before any job is dispatched, and ``recloop --check-cluster``, which runs
a tiny task on every node and compares its environment with the driver's.

hydra-ray-launcher retries an unreachable address forever, so :func:`check_reachable` opens one
TCP connection with a short timeout first. ``auto`` is resolved the way ``ray.init`` does it, kept
simple: ``RAY_ADDRESS``, else the file ``ray start --head`` leaves on this machine
(``$RAY_TMPDIR``/``$TMPDIR`` or ``/tmp``, then ``ray/ray_current_cluster``).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.config import ConfigError

CONNECT_TIMEOUT_S = 5.0
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
    resolved = check_reachable(address)
    use_token_if_available()  # before ray is imported: it reads RAY_AUTH_MODE once
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
    print(_table(rows, driver))
    differ = [
        f"{node} {key} {env[key]} ≠ {driver[key]}"
        for node, _, env in rows[1:]
        for key in ENVIRONMENT
        if env[key] != driver[key]
    ]
    if differ:
        print(f"recloop: error: nodes differ from the driver: {'; '.join(differ)}", file=sys.stderr)
        return 1
    print(
        f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} at {resolved}: same environment as the driver"
    )
    return 0


def _table(rows: list[tuple[str, str, dict[str, str]]], driver: dict[str, str]) -> str:
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
