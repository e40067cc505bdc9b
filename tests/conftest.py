"""Shared fixtures come from pytest plugins under tests/ (registered here, once)."""

import os

# Prefect logs "Stopping temporary server" at interpreter exit, after pytest has closed
# the stream it captured; at WARNING that line is never written.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

pytest_plugins = ["tests.s3_server", "tests.docker_daemons"]
