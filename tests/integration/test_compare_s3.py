"""``basebench compare`` against runs published to moto's S3 server with the real publish code."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from cli.main import main
from tasks.dataset.stores import S3Store
from tasks.dataset.writer import publish
from tests.records_factory import NIGHTLY_NEW_HIGH, T0, make_run, nightly_run
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Published:
    url: str
    endpoint: str
    store: S3Store


@pytest.fixture(scope="module")
def published(s3_server: S3Server) -> Iterator[Published]:
    """night-1; night-2 with a grown bookworm image and one more HIGH CVE; night-3 = night-2."""
    prefix = f"compare/{uuid.uuid4().hex}"
    store = S3Store(s3_server.bucket, prefix, s3_server.endpoint_url, s3_server.region)
    publish(nightly_run("night-1", T0), store)
    regressed = {
        "grow": {"bookworm": 12_000_000},
        "extra_findings": {"distroless-static": (NIGHTLY_NEW_HIGH,)},
    }
    publish(nightly_run("night-2", T0 + DAY, **regressed), store)  # type: ignore[arg-type]
    publish(nightly_run("night-3", T0 + 2 * DAY, **regressed), store)  # type: ignore[arg-type]
    yield Published(f"s3://{s3_server.bucket}/{prefix}", s3_server.endpoint_url, store)


def compare(published: Published, *extra: str) -> int:
    return main(["compare", published.url, "--s3-endpoint", published.endpoint, *extra])


def test_grown_image_and_new_cve_are_exactly_the_regressions(
    published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    code = compare(published, "--base", "night-1", "--head", "night-2", "--json")
    assert code == 1
    data = json.loads(capsys.readouterr().out)
    assert (data["base_run"], data["head_run"], data["regressed"]) == ("night-1", "night-2", True)
    assert [(c["kind"], c["cell_id"], c["regression"]) for c in data["changes"]] == [
        ("size", "id-bookworm", True),
        ("new-cve", "id-distroless-static", True),
    ]
    size, cve = data["changes"]
    assert (size["base"], size["head"]) == (120_000_000, 132_000_000)
    # libssl3 is not among night-1's packages of that cell: the image changed.
    assert cve["detail"] == {
        "vulnerability_id": "CVE-2024-3000",
        "severity": "HIGH",
        "packages": ["libssl3"],
        "origins": ["base"],
        "cause": "image",
        "reason": "package libssl3 3.0.11-1~deb12u2 added",
    }
    assert data["vulnerability_changes_by_cause"]["image"] == {
        "added": 1,
        "removed": 0,
        "severity": 0,
    }
    assert data["new_serious_by_origin"] == {"base": 1, "build": 0, "unknown": 0}


def test_table_output(published: Published, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare(published, "--base", "night-1", "--head", "night-2") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "compare night-1 -> night-2"
    assert [line.split()[:2] for line in lines[1:3]] == [
        ["REGRESSION", "size"],
        ["REGRESSION", "new-cve"],
    ]
    assert lines[1].endswith("size 120 MB -> 132 MB (+12.0 MB, +10.0%)")
    assert "go-hello go1.22.10 bookworm" in lines[1]
    assert lines[2].endswith(
        "new HIGH CVE-2024-3000 in libssl3, inherited from the base "
        "[image changed: package libssl3 3.0.11-1~deb12u2 added]"
    )
    assert lines[3] == "new CRITICAL/HIGH: 1 inherited from the base, 0 added by the build"
    assert lines[4] == "vulnerability changes by cause: image changed 1 (1 added)"
    assert lines[5] == "2 regression(s)"
    assert len(lines) == 6


def test_default_is_latest_against_previous_and_identical_runs_are_clean(
    published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    assert compare(published) == 0  # night-3 vs night-2: identical
    out = capsys.readouterr().out
    assert out.splitlines() == ["compare night-2 -> night-3", "no changes", "clean: no regression"]
    assert compare(published, "--head", "night-2", "--json") == 1  # base defaults to night-1
    assert json.loads(capsys.readouterr().out)["base_run"] == "night-1"


def test_threshold_option(published: Published, capsys: pytest.CaptureFixture[str]) -> None:
    code = compare(
        published, "--base", "night-1", "--head", "night-2", "--json",
        "--threshold", "size-bytes=20000000",
    )  # fmt: skip
    assert code == 1  # the CVE is still new
    data = json.loads(capsys.readouterr().out)
    assert [(c["kind"], c["regression"]) for c in data["changes"]] == [
        ("size", False),
        ("new-cve", True),
    ]
    assert data["thresholds"]["size_bytes"] == 20_000_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--base", "night-9"), "--base night-9: no complete run with that id in s3://"),
        (("--threshold", "size=1"), "--threshold 'size=1': expected KEY=VALUE with KEY one of"),
        (("--threshold", "alpha=x"), "--threshold 'alpha=x': 'x' is not a number"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    published: Published, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    assert compare(published, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("basebench compare: ")
    assert message in err


def test_only_runs_of_the_same_matrix_are_compared(
    s3_server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"matrices/{uuid.uuid4().hex}"
    store = S3Store(s3_server.bucket, prefix, s3_server.endpoint_url, s3_server.region)
    publish(nightly_run("night-1", T0), store)
    publish(make_run("demo-1", started_at=T0 + DAY), store)  # matrix "demo", the latest run
    url = f"s3://{s3_server.bucket}/{prefix}"
    assert main(["compare", url, "--s3-endpoint", s3_server.endpoint_url]) == 2
    assert (
        "run demo-1 has no earlier comparable run (matrix 'demo', filters '', image sources "
        "None)" in capsys.readouterr().err
    )
    publish(nightly_run("night-2", T0 + 2 * DAY), store)
    assert main(["compare", url, "--s3-endpoint", s3_server.endpoint_url]) == 0
    assert capsys.readouterr().out.startswith("compare night-1 -> night-2\n")


def test_empty_store(s3_server: S3Server, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"s3://{s3_server.bucket}/empty/{uuid.uuid4().hex}"
    assert main(["compare", url, "--s3-endpoint", s3_server.endpoint_url]) == 2
    assert "no complete runs in s3://" in capsys.readouterr().err


def test_only_runs_of_the_same_filters_and_image_sources_are_compared(
    s3_server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"like/{uuid.uuid4().hex}"
    store = S3Store(s3_server.bucket, prefix, s3_server.endpoint_url, s3_server.region)
    forged = '{"docker.io":"127.0.0.1:5000"}'
    night = dataclasses.replace(nightly_run("night-1", T0), image_sources=forged)
    publish(night, store)
    # Later runs of the same matrix: filtered, and pulled from upstream: neither compares.
    only = dataclasses.replace(
        nightly_run("only-1", T0 + DAY, bases=("bookworm",)),
        image_sources=forged,
        filters="base=bookworm",
    )
    publish(only, store)
    upstream = dataclasses.replace(nightly_run("up-1", T0 + 2 * DAY), image_sources="{}")
    publish(upstream, store)
    publish(dataclasses.replace(nightly_run("night-2", T0 + 3 * DAY), image_sources=forged), store)
    url = f"s3://{s3_server.bucket}/{prefix}"
    assert main(["compare", url, "--s3-endpoint", s3_server.endpoint_url]) == 0
    assert capsys.readouterr().out.startswith("compare night-1 -> night-2\n")
    # The filtered run's previous run is not night-1 (all cells) ...
    assert main(["compare", url, "--s3-endpoint", s3_server.endpoint_url, "--head", "only-1"]) == 2
    assert (
        "run only-1 has no earlier comparable run (matrix 'nightly', filters 'base=bookworm'"
        in (capsys.readouterr().err)
    )
    # ... and chosen by hand, unlike runs are refused, saying how they differ.
    argv = ("--base", "night-1", "--head", "up-1")
    assert main(["compare", url, "--s3-endpoint", s3_server.endpoint_url, *argv]) == 2
    assert capsys.readouterr().err == (
        "basebench compare: runs night-1 and up-1 are not comparable: image_sources "
        "'{\"docker.io\":\"127.0.0.1:5000\"}' vs '{}'\n"
    )
