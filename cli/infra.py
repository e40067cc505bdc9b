"""The ``infra`` command: ``up``, ``down``, ``status`` (cli/main.py wires it into basebench)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from infra.engine import engine_answers, engine_pid
from infra.errors import InfraError
from infra.forge.catalogue import Needs
from infra.paths import DEFAULT_APT_SOURCES, DEFAULT_CACHE_DIR, DEFAULT_REGISTRY_PORT, state_dir
from infra.registry_api import RegistryAPI
from infra.up import StepResult, down, registry_for, up
from tasks import labels
from tasks.hosts import DEFAULT_URL


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``infra {up,down,status}``; each sets ``func(args) -> int``."""
    infra = subparsers.add_parser("infra", help="local Docker engine, registry and forged images")
    commands = infra.add_subparsers(dest="infra_command", required=True)

    up_cmd = commands.add_parser("up", help="start the registry and forge base images")
    up_cmd.add_argument(
        "--go",
        action="append",
        default=[],
        metavar="VERSION",
        help="Go version of a golang:<v>-bookworm builder (repeatable)",
    )
    up_cmd.add_argument(
        "--config",
        action="append",
        default=[],
        type=Path,
        metavar="MATRIX",
        help="forge only the bases and builders these matrix files use (repeatable)",
    )
    up_cmd.add_argument(
        "--apt-sources",
        type=Path,
        default=DEFAULT_APT_SOURCES,
        help=f"apt sources file used as mirror (default {DEFAULT_APT_SOURCES})",
    )
    up_cmd.add_argument(
        "--alpine-rootfs",
        type=Path,
        metavar="FILE",
        help="an Alpine minirootfs tarball to serve as library/alpine:<major.minor> instead "
        "of the stand-in forged from Debian's musl and busybox",
    )
    _common(up_cmd)
    up_cmd.set_defaults(func=run_up)  # fmt: skip

    down_cmd = commands.add_parser("down", help="stop the registry (and dockerd if we started it)")
    _common(down_cmd)
    down_cmd.set_defaults(func=run_down)

    status_cmd = commands.add_parser("status", help="show engine, registry and forged images")
    _common(status_cmd)
    status_cmd.add_argument("--json", action="store_true", help="print the status as JSON")
    status_cmd.set_defaults(func=run_status)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_REGISTRY_PORT,
        help=f"registry port on 127.0.0.1 (default {DEFAULT_REGISTRY_PORT})",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"registry storage, wheels, apt lists (default {DEFAULT_CACHE_DIR})",
    )


def matrix_needs(args: argparse.Namespace) -> Needs | None:
    """The bases and builders the --config matrices use; None without --config (``up``
    then forges its default Debian 12 bases)."""
    if not args.config:
        return None
    from infra.forge.catalogue import needs_of
    from tasks.config_file import ConfigError
    from tasks.matrix import load_matrix

    needs = Needs()
    for path in args.config:
        try:
            needs |= needs_of(load_matrix(path))
        except ConfigError as exc:
            raise InfraError(str(exc).splitlines()[0]) from exc
    return needs


def _print_step(result: StepResult) -> None:
    print(
        f"{result.name:<34} {result.action:<9} {result.seconds:7.1f} s  {result.detail}", flush=True
    )


def run_up(args: argparse.Namespace) -> int:
    """``infra up``: one line per step; errors as one line and exit code 2."""
    started = time.monotonic()
    try:
        state = up(
            list(args.go),
            args.port,
            args.cache_dir,
            args.apt_sources,
            report=_print_step,
            alpine_rootfs=args.alpine_rootfs,
            needs=matrix_needs(args),
        )
    except InfraError as exc:
        print(f"infra up: {exc}", file=sys.stderr)
        return 2
    built = sum(s.action == "built" for s in state.steps)
    print(f"infra up: done in {time.monotonic() - started:.1f} s, {built} image(s) built, "
          f"registry {state.registry}, engine {state.docker_url}")  # fmt: skip
    return 0


def run_down(args: argparse.Namespace) -> int:
    """``infra down``: stop what ``up`` started for this cache dir."""
    try:
        stopped = down(args.cache_dir)
    except InfraError as exc:
        print(f"infra down: {exc}", file=sys.stderr)
        return 2
    print(f"infra down: stopped {', '.join(stopped) if stopped else 'nothing (not running)'}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    """``infra status``: engine, registry and each forged image's recipe hash; 1 when the
    registry is not running."""
    status = infra_status(args.cache_dir, args.port)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        engine, registry = status["engine"], status["registry"]
        own = f" (our dockerd pid {engine['pid']})" if engine["pid"] else ""
        print(f"engine    {engine['url']}: {engine['state']}{own}")
        pid = f" (pid {registry['pid'] or 'not ours'})" if registry["running"] else ""
        state = "running" if registry["running"] else "not running"
        print(f"registry  {registry['address']}: {state}{pid}")
        for image in status["images"]:
            print(f"image     {image['ref']}  recipe {image['recipe_hash']}")
    return 0 if status["registry"]["running"] else 1


def infra_status(cache_dir: Path, port: int) -> dict[str, Any]:
    """What ``infra status`` reports, as plain data."""
    url = os.environ.get("DOCKER_HOST") or DEFAULT_URL
    engine = {
        "url": url,
        "state": "answers" if engine_answers(url) else "not answering",
        "pid": engine_pid(state_dir(cache_dir)),
    }
    registry = registry_for(cache_dir, port)
    api = RegistryAPI(registry.address)
    running = api.healthy()
    images = [
        {
            "ref": f"{repository}:{tag}",
            "recipe_hash": (api.labels(repository, tag) or {}).get(labels.RECIPE_HASH, "-"),
        }
        for repository in (api.repositories() if running else [])
        for tag in sorted(api.tags(repository))
    ]
    return {
        "engine": engine,
        "registry": {"address": registry.address, "running": running, "pid": registry.pid()},
        "images": images,
    }
