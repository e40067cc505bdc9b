"""``basebench deploy`` and ``basebench trigger``: basebench on a Prefect server with workers.

``deploy`` validates every deployment of prefect.yaml with the CLI's config models,
makes sure the work pool exists, creates or resizes the per-host global concurrency
limits (``docker-host:<name>``, size ``max_parallel``) and then runs Prefect's own
``prefect deploy --all`` from the repository root. ``trigger`` starts a flow run of a
deployment (``adhoc`` by default; ``rescan`` runs the rescan flow) and can wait for its end.

Prefect is imported only inside the commands, after the environment is set, because
Prefect reads its settings on import.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.config_file import ConfigError, read_mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO_ROOT / "prefect.yaml"
ENTRYPOINT = "flows/deployments.py:benchmark_file"
RESCAN_ENTRYPOINT = "flows/deployments.py:rescan_file"
ENTRYPOINTS = (ENTRYPOINT, RESCAN_ENTRYPOINT)
# Parameters each flow takes (matrix is required by both).
PARAMETERS = {
    ENTRYPOINT: {"matrix", "only", "output"},
    RESCAN_ENTRYPOINT: {"matrix", "output", "run"},
}
# Talking to a real server: never send telemetry, never start a temporary server.
SERVER_ENV = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
POLL_SECONDS = 2.0
RESCAN_DEPLOYMENT = "rescan"  # the deployment of the rescan flow (prefect.yaml)


@dataclass(frozen=True)
class DeploymentSpec:
    """One basebench deployment of prefect.yaml, as far as ``deploy`` checks it."""

    name: str
    work_pool: str
    parameters: dict[str, Any]
    entrypoint: str = ENTRYPOINT


def add_parser(subparsers: Any) -> None:
    """Register ``deploy`` and ``trigger`` on the CLI's subparsers (``add_subparsers()``)."""
    deploy = subparsers.add_parser(
        "deploy",
        help="create/update the Prefect deployments (prefect.yaml) and per-host limits",
    )
    _add_api_url(deploy)
    deploy.add_argument(
        "--matrix",
        action="append",
        default=[],
        metavar="FILE",
        help="also create host limits for this matrix's hosts (for ad-hoc runs; repeatable)",
    )
    deploy.add_argument("--prefect-file", default=str(PREFECT_FILE), help=argparse.SUPPRESS)
    deploy.set_defaults(func=cmd_deploy)

    trigger = subparsers.add_parser(
        "trigger", help="start a flow run of a deployment on the Prefect server"
    )
    trigger.add_argument("deployment", nargs="?", default="adhoc", help="default: adhoc")
    _add_api_url(trigger)
    trigger.add_argument("--matrix", help="matrix file, relative to the repository root")
    trigger.add_argument("--only", action="append", default=[], metavar="KEY=GLOB")
    trigger.add_argument("--output", help="results folder or s3://bucket/prefix")
    trigger.add_argument("--wait", action="store_true", help="wait until the flow run ends")
    trigger.add_argument("--timeout", type=float, help="seconds to wait with --wait")
    trigger.set_defaults(func=cmd_trigger)


def _add_api_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-url",
        help="Prefect server API, e.g. http://127.0.0.1:4200/api (default: $PREFECT_API_URL)",
    )


def server_env(api_url: str | None) -> dict[str, str]:
    """The environment for talking to the server; ``ConfigError`` when no server is named."""
    url = api_url or os.environ.get("PREFECT_API_URL", "")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            "no Prefect server: pass --api-url http://HOST:4200/api or set PREFECT_API_URL "
            f"(got {url!r})"
        )
    return {**SERVER_ENV, "PREFECT_API_URL": url}


def read_deployments(prefect_file: Path) -> list[DeploymentSpec]:
    """The deployments of ``prefect_file`` whose entrypoint is a basebench flow."""
    entries = read_mapping(prefect_file, ConfigError).get("deployments")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{prefect_file}: deployments: expected a non-empty list")
    specs = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("entrypoint") not in ENTRYPOINTS:
            continue
        pool = (entry.get("work_pool") or {}).get("name")
        if not entry.get("name") or not pool:
            raise ConfigError(
                f"{prefect_file}: deployments.{number}: needs `name` and `work_pool.name`"
            )
        parameters = dict(entry.get("parameters") or {})
        specs.append(DeploymentSpec(entry["name"], pool, parameters, entry["entrypoint"]))
    if not specs:
        raise ConfigError(f"{prefect_file}: no deployment has entrypoint {ENTRYPOINT}")
    return specs


def validate(specs: list[DeploymentSpec], extra_matrices: list[str]) -> list[Any]:
    """Check every deployment's parameters; return the host limits their matrices need."""
    from flows.deployments import load_parameters, load_rescan_parameters
    from tasks.hosts.limits import HostLimitConflict, host_limits

    hosts = []
    for spec in specs:
        allowed = PARAMETERS[spec.entrypoint]
        unknown = set(spec.parameters) - allowed
        if unknown or "matrix" not in spec.parameters:
            optional = " and ".join(sorted(allowed - {"matrix"}))
            raise ConfigError(
                f"deployment {spec.name!r}: parameters must include matrix and may include "
                f"{optional} (unknown: {', '.join(sorted(unknown)) or 'none'})"
            )
        if spec.entrypoint == RESCAN_ENTRYPOINT:  # uses no Docker host: no limits
            load_rescan_parameters(spec.parameters["matrix"], spec.parameters.get("output"))
            continue
        config, _ = load_parameters(**spec.parameters)
        hosts += [(spec.parameters["matrix"], host) for host in config.hosts]
    for matrix in extra_matrices:
        config, _ = load_parameters(matrix)
        hosts += [(matrix, host) for host in config.hosts]
    try:
        return host_limits(hosts)
    except HostLimitConflict as exc:
        raise ConfigError(str(exc)) from exc


def ensure_work_pool(name: str) -> bool:
    """Create a process work pool ``name`` unless it exists; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(
                WorkPoolCreate(name=name, type="process", base_job_template=template)
            )
            return True


class ServerUnreachable(ConfigError):
    """The Prefect server named by --api-url / PREFECT_API_URL did not answer."""


def cmd_deploy(args: argparse.Namespace) -> int:
    """Validate, create pool and limits, then ``prefect deploy --all``; Prefect's exit code."""
    env = server_env(args.api_url)
    prefect_file = Path(args.prefect_file).resolve()
    specs = read_deployments(prefect_file)
    limits = validate(specs, args.matrix)
    os.environ.update(env)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.hosts.limits import ensure_host_limits

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), reaching(env):
        for pool in sorted({spec.work_pool for spec in specs}):
            if ensure_work_pool(pool):
                print(f"created process work pool {pool!r}")
        ensure_host_limits(limits)
    for item in limits:
        print(f"concurrency limit {item.name} = {item.limit}")
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
    command += ["--prefect-file", str(prefect_file)]
    source = repository_source()
    print(f"workers clone {source['BASEBENCH_REPOSITORY']} ({source['BASEBENCH_BRANCH']})")
    # The repository root: entrypoints are relative to it.
    run_env = {**source, **os.environ, **env}
    done = subprocess.run(command, cwd=REPO_ROOT, env=run_env, check=False)
    return done.returncode


def repository_source() -> dict[str, str]:
    """What prefect.yaml's pull step clones: this checkout's ``origin`` (else its path)
    and its current branch; ``BASEBENCH_REPOSITORY`` / ``BASEBENCH_BRANCH`` override."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "BASEBENCH_REPOSITORY": git("remote", "get-url", "origin") or str(REPO_ROOT),
        "BASEBENCH_BRANCH": git("rev-parse", "--abbrev-ref", "HEAD") or "main",
    }


@contextmanager
def reaching(env: dict[str, str]) -> Iterator[None]:
    """Turn a refused or failed connection to the server into a one-line error."""
    import httpx

    try:
        yield
    except httpx.TransportError as exc:
        raise ServerUnreachable(
            f"cannot reach the Prefect server at {env['PREFECT_API_URL']}: {exc}; "
            "is `prefect server start` running there?"
        ) from exc


def trigger_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """Only the parameters given (the deployment's defaults fill the rest), validated."""
    from flows.deployments import load_parameters, load_rescan_parameters
    from tasks.matrix import parse_only

    parameters: dict[str, Any] = {}
    if getattr(args, "deployment", None) == RESCAN_DEPLOYMENT:
        if args.only:
            raise ConfigError("trigger rescan: --only does not apply (a rescan scans every cell)")
        if args.matrix:
            load_rescan_parameters(args.matrix, args.output)
            parameters["matrix"] = args.matrix
        if args.output:
            parameters["output"] = args.output
        return parameters
    if args.matrix:
        load_parameters(args.matrix, args.only, args.output)
        parameters["matrix"] = args.matrix
    else:
        parse_only(args.only)
    if args.only:
        parameters["only"] = args.only
    if args.output:
        parameters["output"] = args.output
    return parameters


def cmd_trigger(args: argparse.Namespace) -> int:
    """Start a flow run; with ``--wait`` 0 only when it completes."""
    env = server_env(args.api_url)
    parameters = trigger_parameters(args)
    os.environ.update(env)
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import FLOW_NAME, RESCAN_FLOW_NAME

    flow_name = RESCAN_FLOW_NAME if args.deployment == RESCAN_DEPLOYMENT else FLOW_NAME
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), reaching(env):
        run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync in a sync context
            f"{flow_name}/{args.deployment}", parameters=parameters, timeout=0
        )
        print(f"flow run {run.name} ({run.id}) of {flow_name}/{args.deployment}")
        if not args.wait:
            return 0
        try:
            state = wait_for_flow_run(run.id, args.timeout)
        except TimeoutError as exc:
            print(f"basebench: {exc}", file=sys.stderr)
            return 1
    print(f"flow run {run.name}: {state.name}" + (f": {state.message}" if state.message else ""))
    return 0 if state.is_completed() else 1


def wait_for_flow_run(flow_run_id: Any, timeout: float | None = None) -> Any:
    """Poll the server until the flow run reaches a final state; return that state."""
    from prefect.client.orchestration import get_client

    deadline = None if timeout is None else time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final():
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"flow run {flow_run_id} not finished after {timeout} s")
            time.sleep(POLL_SECONDS)
