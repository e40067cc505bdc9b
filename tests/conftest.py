"""Shared fixtures come from pytest plugins under tests/ (registered here, once)."""

pytest_plugins = ["tests.s3_server", "tests.docker_daemons"]
