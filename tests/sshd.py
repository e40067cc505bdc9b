"""A real OpenSSH server on 127.0.0.1 for tests: its own host key, one client key, root only.

Needs the Debian package openssh-server (``/usr/sbin/sshd``) and openssh-client
(``ssh-keygen``). ``running_sshd(directory)`` starts it and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.registry import free_port
from tasks.processes import children
from tasks.programs import find_program

# sshd refuses to start without its privilege separation folder (made at boot by systemd).
PRIVSEP_DIR = Path("/run/sshd")


@dataclass(frozen=True)
class Sshd:
    """A running test sshd and the files a client needs to reach it."""

    port: int
    identity_file: Path
    known_hosts_file: Path
    host_public_key: str  # "ssh-ed25519 AAAA..."
    directory: Path

    @property
    def url(self) -> str:
        """``ssh://root@127.0.0.1:PORT``."""
        return f"ssh://root@127.0.0.1:{self.port}"


def make_key(path: Path) -> Path:
    """A new ed25519 key pair without passphrase at ``path`` and ``path.pub``; returns ``path``."""
    subprocess.run(
        [find_program("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
    )
    return path


def known_hosts_line(port: int, public_key: str) -> str:
    """A known_hosts entry for 127.0.0.1 on a non-default port."""
    return f"[127.0.0.1]:{port} {public_key}\n"


@contextmanager
def running_sshd(directory: Path, timeout: float = 10.0) -> Iterator[Sshd]:
    """Start ``sshd -D -e`` on a free 127.0.0.1 port with files in ``directory``; stop it after."""
    directory.mkdir(parents=True, exist_ok=True)
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    host_key = make_key(directory / "host_ed25519")
    client_key = make_key(directory / "client_ed25519")
    (directory / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    host_public = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
    port = free_port()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(known_hosts_line(port, host_public))
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress 127.0.0.1:{port}",
                f'HostKey "{host_key}"',
                f'PidFile "{directory / "sshd.pid"}"',
                f'AuthorizedKeysFile "{directory / "authorized_keys"}"',
                "AllowUsers root",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                # No PAM: nothing of the machine's login stack is involved.
                "UsePAM no",
                # authorized_keys lives under /tmp (world-writable): StrictModes yes refuses it.
                "StrictModes no",
                "AllowStreamLocalForwarding yes",
                # Also needed for unix sockets: with "no" sshd denies every direct-streamlocal
                # channel ("request was denied"); "PermitOpen none" denies them too.
                "AllowTcpForwarding local",
                "X11Forwarding no",
                "PermitTTY no",
                "",
            ]
        )
    )
    log = directory / "sshd.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [find_program("sshd"), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_listening(process, port, log, timeout)
        yield Sshd(port, client_key, known_hosts, host_public, directory)
    finally:
        # Each connection is served by a child in a session of its own that outlives the
        # listener (so a restart keeps logins); end the ones a failed test left connected.
        started = children(process.pid)
        for child in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
        # Let the listener reap them: once it is gone, they would linger as zombies.
        deadline = time.monotonic() + 5
        while set(started) & set(children(process.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(8).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(
        f"sshd not listening on 127.0.0.1:{port} after {timeout} s: {log.read_text()}"
    )
