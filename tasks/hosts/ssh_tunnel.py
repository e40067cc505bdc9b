"""A Docker engine reached over ssh: its unix socket forwarded to a local one by OpenSSH.

The Docker SDK's own ssh transport reads only the invoking user's ``~/.ssh`` (no identity
file, no known_hosts of our choosing), so basebench runs ``ssh -N -L local:remote`` itself
and points the SDK at ``unix://<local socket>``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.programs import ProgramMissing, find_program

DEFAULT_REMOTE_SOCKET = "/var/run/docker.sock"
# sun_path holds 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


class TunnelError(ConnectionError):
    """The tunnel did not open; one line: the ssh url and ssh's own last error line."""


class SshOptions(BaseModel):
    """How to reach an ``ssh://`` host: which key, which host keys to trust, which socket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identity_file: Path | None = None
    known_hosts_file: Path | None = None
    remote_socket: str = DEFAULT_REMOTE_SOCKET
    connect_timeout_seconds: int = Field(10, ge=1, le=300)

    @field_validator("identity_file", "known_hosts_file")
    @classmethod
    def _exists(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        if not path.expanduser().is_file():
            raise ValueError(f"no such file: {path}")
        return path.expanduser().resolve()

    @field_validator("remote_socket")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"remote_socket must be an absolute path, not {path!r}")
        return path


class SshTunnel:
    """``ssh -N -L`` from a private local socket to the engine socket of an ``ssh://`` host.

    ``open()`` returns the ``unix://`` url to give the Docker SDK; ``close()`` (or leaving a
    ``with`` block) stops ssh and removes the local socket's folder.
    """

    def __init__(self, url: str, options: SshOptions | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"url {url!r}: expected ssh://[USER@]HOST[:PORT]")
        user, host = parts.username or "", parts.hostname
        # A user or host starting with "-" would reach ssh as an option (e.g. -oProxyCommand).
        if user.startswith("-") or host.startswith("-"):
            raise ValueError(f"url {url!r}: user and host may not start with '-'")
        self.url = url
        self.options = options or SshOptions()
        self._destination = f"{user}@{host}" if user else host
        self._port = parts.port or 22
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._dir: Path | None = None

    @property
    def pid(self) -> int | None:
        """The ssh process id while the tunnel is (or was last) open."""
        return self._process.pid if self._process else None

    @property
    def socket_dir(self) -> Path | None:
        """The private folder holding the local socket, until ``close()``."""
        return self._dir

    def command(self, local_socket: Path) -> list[str]:
        """The ssh command line that forwards ``local_socket`` to the remote engine socket."""
        try:
            ssh = find_program("ssh")
        except ProgramMissing as exc:
            raise TunnelError(f"{self.url}: {exc}") from exc
        opts = self.options
        command = [
            ssh,
            "-N",
            # Never prompt (no tty here): a missing key or unknown host fails at once.
            "-o", "BatchMode=yes",
            # Without it ssh stays up (and we wait) even when it could not bind the forward.
            "-o", "ExitOnForwardFailure=yes",
            "-o", "StreamLocalBindUnlink=yes",
            "-o", f"ConnectTimeout={opts.connect_timeout_seconds}",
            # A dead connection ends ssh instead of leaving a socket that hangs every call.
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=3",
        ]  # fmt: skip
        if opts.identity_file is not None:
            # IdentitiesOnly: use this key, not whatever an agent or ~/.ssh offers first.
            command += ["-i", str(opts.identity_file), "-o", "IdentitiesOnly=yes"]
        if opts.known_hosts_file is not None:
            # Quoted: ssh splits an unquoted UserKnownHostsFile value on spaces.
            command += [
                "-o", f'UserKnownHostsFile="{opts.known_hosts_file}"',
                "-o", "StrictHostKeyChecking=yes",
            ]  # fmt: skip
        command += ["-p", str(self._port), "-L", f"{local_socket}:{opts.remote_socket}"]
        return [*command, "--", self._destination]

    def open(self, timeout: float = 30.0) -> str:
        """Start ssh and return ``unix://<local socket>`` once that socket accepts.

        Raises ``TunnelError`` when ssh exits first (its last stderr line says why) or the
        socket does not accept within ``timeout`` seconds; nothing is left running then.
        A tunnel opens once; make a new one to reconnect.
        """
        if self._process is not None:
            raise RuntimeError(f"{self.url}: tunnel already opened")
        # mkdtemp makes the folder 0700: only we may connect to a root-equivalent socket.
        self._dir = Path(tempfile.mkdtemp(prefix="basebench-ssh-"))
        local = self._dir / "docker.sock"
        try:
            if len(str(local)) > MAX_SOCKET_PATH:
                raise TunnelError(f"{self.url}: local socket path too long: {local}")
            command = self.command(local)
            self._stderr = (self._dir / "ssh.stderr").open("w+b")
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr
            )
            self._wait(self._process, local, timeout)
        except BaseException:
            # Also on KeyboardInterrupt: never leave an ssh process or a socket folder behind.
            self.close()
            raise
        return f"unix://{local}"

    def close(self) -> None:
        """Stop ssh (TERM, then KILL after 5 s) and remove the local socket's folder."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> str:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _wait(self, process: subprocess.Popen[bytes], local: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not _accepts(local):
            if process.poll() is not None:
                raise TunnelError(self._failure(f"ssh exited with status {process.returncode}"))
            if time.monotonic() > deadline:
                raise TunnelError(self._failure(f"no forwarded socket after {timeout:g} s"))
            time.sleep(0.02)

    def _failure(self, fallback: str) -> str:
        # ssh's last stderr line is the cause ("Permission denied (publickey).", "Host key
        # verification failed.", "... Connection refused"); banners and warnings come first.
        text = b""
        if self._stderr is not None:
            self._stderr.flush()
            self._stderr.seek(0)
            text = self._stderr.read()
        lines = [line.strip() for line in text.decode(errors="replace").splitlines()]
        last = next((line for line in reversed(lines) if line), fallback)
        return f"{self.url}: {last}"


def _accepts(path: Path) -> bool:
    # ssh creates the listening socket only after login and a successful bind.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True
