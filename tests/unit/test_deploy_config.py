"""prefect.yaml, the deploy/trigger commands' checks and the per-host limits (no server)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from cli.deploy import (
    PREFECT_FILE,
    RESCAN_ENTRYPOINT,
    DeploymentSpec,
    read_deployments,
    server_env,
    trigger_parameters,
    validate,
)
from tasks.config_file import ConfigError
from tasks.hosts.config import HostConfig
from tasks.hosts.limits import HostLimit, HostLimitConflict, host_limit, host_limits

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "infra" / "prefect" / "compose.yaml"


def test_prefect_yaml_has_a_scheduled_nightly_an_unscheduled_adhoc_and_a_rescan() -> None:
    specs = {spec.name: spec for spec in read_deployments(PREFECT_FILE)}
    assert specs == {
        "nightly": DeploymentSpec(
            "nightly", "basebench", {"matrix": "configs/nightly.yaml", "only": []}
        ),
        "adhoc": DeploymentSpec(
            "adhoc", "basebench", {"matrix": "configs/default.yaml", "only": []}
        ),
        "rescan": DeploymentSpec(
            "rescan", "basebench", {"matrix": "configs/nightly.yaml"}, RESCAN_ENTRYPOINT
        ),
    }
    raw = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
    schedules = {d["name"]: d.get("schedules") for d in raw}
    # The rescan has a schedule of its own, independent of the nightly rebuild.
    assert schedules == {
        "nightly": [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}],
        "adhoc": None,
        "rescan": [{"cron": "0 14 * * *", "timezone": "UTC", "active": True}],
    }
    queues = {d["name"]: d["work_pool"]["work_queue_name"] for d in raw}
    assert queues == {"nightly": "nightly", "adhoc": "adhoc", "rescan": "rescan"}


def test_a_rescan_deployment_with_an_unknown_parameter_is_named() -> None:
    spec = DeploymentSpec(
        "rescan", "basebench", {"matrix": "configs/nightly.yaml", "only": []}, RESCAN_ENTRYPOINT
    )
    with pytest.raises(
        ConfigError,
        match=r"^deployment 'rescan': parameters must include matrix and may include output "
        r"and run \(unknown: only\)$",
    ):
        validate([spec], [])


def test_trigger_rescan_validates_its_matrix_and_refuses_filters() -> None:
    args = argparse.Namespace(
        deployment="rescan", matrix="configs/nightly.yaml", only=[], output="s3://bench/p"
    )
    assert trigger_parameters(args) == {"matrix": "configs/nightly.yaml", "output": "s3://bench/p"}
    args.only = ["base=alpine"]
    with pytest.raises(ConfigError, match=r"^trigger rescan: --only does not apply"):
        trigger_parameters(args)


def test_deploy_validates_the_matrices_and_derives_the_limits_of_each_host() -> None:
    limits = validate(read_deployments(PREFECT_FILE), ["configs/example-distroless.yaml"])
    assert limits == [HostLimit("docker-host:local", 2), HostLimit("docker-host-quiet:local", 2)]


def test_deploy_names_the_deployment_with_an_unknown_parameter() -> None:
    spec = DeploymentSpec("odd", "basebench", {"matrix": "configs/default.yaml", "hosts": 1})
    with pytest.raises(ConfigError, match=r"deployment 'odd'.*unknown: hosts"):
        validate([spec], [])


def test_deploy_rejects_a_bad_matrix_with_the_matrix_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    default = (REPO_ROOT / "configs" / "default.yaml").read_text()
    # repeat: 0 in place of the default's own repeat (a key given twice is its own error)
    bad.write_text(re.sub(r"(?m)^repeat: .*$", "repeat: 0", default))
    spec = DeploymentSpec("adhoc", "basebench", {"matrix": str(bad)})
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad))}: repeat: "):
        validate([spec], [])


def test_a_host_with_two_max_parallel_values_is_refused() -> None:
    pairs = [
        ("a.yaml", HostConfig(name="big", max_parallel=4)),
        ("b.yaml", HostConfig(name="big", max_parallel=2)),
    ]
    with pytest.raises(HostLimitConflict, match=r"'big': max_parallel is 4 in a.yaml but 2 in b"):
        host_limits(pairs)


def test_limits_are_deduplicated_and_sorted_by_host() -> None:
    pairs = [
        ("a.yaml", HostConfig(name="zeta", max_parallel=1)),
        ("a.yaml", HostConfig(name="alpha", max_parallel=3)),
        ("b.yaml", HostConfig(name="zeta", max_parallel=1)),
    ]
    assert host_limits(pairs) == [
        HostLimit("docker-host:alpha", 3),
        HostLimit("docker-host-quiet:alpha", 3),
        HostLimit("docker-host:zeta", 1),
        HostLimit("docker-host-quiet:zeta", 1),
    ]


def test_commands_need_a_server_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(ConfigError, match="pass --api-url"):
        server_env(None)
    env = server_env("http://127.0.0.1:4200/api")
    assert env == {
        "PREFECT_API_URL": "http://127.0.0.1:4200/api",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def test_trigger_sends_only_the_given_parameters() -> None:
    args = argparse.Namespace(
        matrix="configs/default.yaml", only=["base=distroless-*"], output=None
    )
    assert trigger_parameters(args) == {
        "matrix": "configs/default.yaml",
        "only": ["base=distroless-*"],
    }
    args = argparse.Namespace(matrix=None, only=[], output="s3://bench/p")
    assert trigger_parameters(args) == {"output": "s3://bench/p"}


def test_trigger_rejects_a_bad_filter() -> None:
    args = argparse.Namespace(matrix=None, only=["colour=red"], output=None)
    with pytest.raises(ConfigError, match=r"--only 'colour=red': expected KEY=GLOB"):
        trigger_parameters(args)


def test_a_disabled_host_limit_never_contacts_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")  # nothing listens there
    entered = []
    with host_limit("local", enabled=False):
        entered.append(True)
    assert entered == [True]


def test_the_cli_has_deploy_and_trigger() -> None:
    from cli.main import build_parser

    parser = build_parser()
    deploy = parser.parse_args(["deploy", "--api-url", "http://127.0.0.1:4200/api"])
    trigger = parser.parse_args(["trigger", "--matrix", "configs/default.yaml", "--wait"])
    assert (deploy.command, deploy.api_url) == ("deploy", "http://127.0.0.1:4200/api")
    assert (trigger.command, trigger.deployment, trigger.wait) == ("trigger", "adhoc", True)


def test_compose_recipe_binds_loopback_and_keeps_secrets_out() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "prefect-server", "minio", "minio-init", "worker"}
    ports = [port for service in services.values() for port in service.get("ports", [])]
    assert ports and all(port.startswith("127.0.0.1:") for port in ports)
    assert services["worker"]["command"][-2:] == ["--pool", "basebench"]
    for name in ("prefect-server", "worker"):
        assert services[name]["environment"]["DO_NOT_TRACK"] == "1"
        assert services[name]["environment"]["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    secrets = re.findall(r"(?:PASSWORD|SECRET\w*|ACCESS_KEY\w*): (\S+)", COMPOSE.read_text())
    assert secrets and all(value.startswith("${") for value in secrets), secrets
