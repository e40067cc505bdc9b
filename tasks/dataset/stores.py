"""Where result files live: a local folder or an S3 bucket, behind one small interface.

A store holds files under relative, ``/``-separated paths such as
``documents/<run>/<cell>/trivy.json``. Implementations provide five file primitives and
``table_location``, which tells a Delta Lake writer or reader where a table folder is
and how to reach it (see ``ResultStore``); ``conformance.stores`` is the
conformance suite every implementation passes.

Errors: a missing file raises ``FileNotFoundError``; any other failure raises
``StoreError`` (an ``OSError``) whose message names the location.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

import pyarrow.fs as pafs

from tasks.dataset.output import S3Config, check_output, is_s3, split_s3

# Local temp files start with this; list() never reports them.
_TEMP_PREFIX = ".tmp-"
# S3 DeleteObjects accepts at most this many keys per call.
_S3_DELETE_BATCH = 1000


class StoreError(OSError):
    """A store operation failed for a reason other than a missing file."""


# delta-rs commits a new log entry with a put-if-absent. S3 offers it as conditional
# writes; with a DynamoDB lock configured instead (AWS_S3_LOCKING_PROVIDER in the
# environment, which delta-rs reads itself) the option must not be set.
_CONDITIONAL_PUT = {"conditional_put": "etag"}
_LOCKING_PROVIDER_ENV = "AWS_S3_LOCKING_PROVIDER"


@dataclass(frozen=True)
class TableLocation:
    """Where a Delta table lives: a URI and the ``storage_options`` delta-rs needs for
    it, and a pyarrow filesystem rooted at the table for reading its data files."""

    uri: str
    storage_options: dict[str, str] = field(default_factory=dict)
    # Native (C++) filesystems only: deltalake's default, a Python filesystem, hands
    # Python buffers to Arrow's threads, and one released during interpreter shutdown
    # aborts the process ("terminate called without an active exception", arrow#39862).
    filesystem: pafs.FileSystem | None = None


@runtime_checkable
class ResultStore(Protocol):
    """A flat namespace of files addressed by relative ``/``-separated paths."""

    def write(self, path: str, data: bytes) -> None:
        """Create or replace the file at ``path``; readers never see a partial file."""

    def read(self, path: str) -> bytes:
        """The whole file at ``path``; ``FileNotFoundError`` if there is none."""

    def list(self, prefix: str = "") -> list[str]:
        """Sorted paths of all files under the folder ``prefix`` ("" = everything)."""

    def delete(self, prefix: str) -> int:
        """Remove the file ``prefix`` or every file under the folder ``prefix``.

        Returns how many files were removed; nothing there is not an error.
        """

    def location(self, path: str = "") -> str:
        """Where ``path`` is, for messages: a filesystem path or an ``s3://`` URL."""

    def table_location(self, path: str) -> TableLocation:
        """The folder ``path`` as a Delta table location (its files are this store's)."""


def check_path(path: str, *, allow_empty: bool = False) -> str:
    """Validate a store path and return it without surrounding slashes.

    Rejects absolute paths, ``..``/``.``/empty components and backslashes so a path can
    never escape the store root.
    """
    cleaned = path.strip("/")
    if not cleaned:
        if allow_empty:
            return ""
        raise ValueError("store path is empty; give a relative path like 'results/part-0.parquet'")
    parts = cleaned.split("/")
    if "\\" in cleaned or any(part in ("", ".", "..") for part in parts):
        raise ValueError(
            f"store path {path!r} is not allowed: use relative '/'-separated names "
            "without '.', '..', '\\' or empty parts"
        )
    return cleaned


class LocalStore:
    """Files in a local folder; writes go to a temp file that is renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _file(self, path: str, *, allow_empty: bool = False) -> Path:
        return self.root.joinpath(*PurePosixPath(check_path(path, allow_empty=allow_empty)).parts)

    def write(self, path: str, data: bytes) -> None:
        target = self._file(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=_TEMP_PREFIX)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from exc

    def read(self, path: str) -> bytes:
        target = self._file(path)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"no such file: {target}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {target}: {exc.strerror or exc}") from exc

    def list(self, prefix: str = "") -> list[str]:
        folder = self._file(prefix, allow_empty=True)
        if not folder.is_dir():
            return []
        try:
            return sorted(
                file.relative_to(self.root).as_posix()
                for file in folder.rglob("*")
                if file.is_file() and not file.name.startswith(_TEMP_PREFIX)
            )
        except OSError as exc:
            raise StoreError(f"cannot list {folder}: {exc.strerror or exc}") from exc

    def delete(self, prefix: str) -> int:
        target = self._file(prefix)
        try:
            if target.is_file():
                target.unlink()
                removed = 1
            elif target.is_dir():
                removed = len(self.list(prefix))
                shutil.rmtree(target)
            else:
                return 0
            self._prune_empty_parents(target.parent)
        except OSError as exc:
            raise StoreError(f"cannot delete {target}: {exc.strerror or exc}") from exc
        return removed

    def _prune_empty_parents(self, folder: Path) -> None:
        # Empty partition folders (date=...) left behind by a replaced run are noise.
        root = self.root.resolve()
        while folder.resolve() != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def location(self, path: str = "") -> str:
        return str(self._file(path, allow_empty=True))

    def table_location(self, path: str) -> TableLocation:
        folder = str(self._file(path).absolute())
        return TableLocation(folder, {}, pafs.SubTreeFileSystem(folder, pafs.LocalFileSystem()))


class S3Store:
    """Objects under ``s3://bucket/prefix`` through boto3 and its standard credential chain."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        if not bucket:
            raise ValueError("S3 bucket name is empty; use s3://<bucket>/<prefix>")
        self.bucket = bucket
        self.prefix = check_path(prefix, allow_empty=True)
        self.endpoint_url = endpoint_url
        import boto3  # imported here so local-only use never loads it

        # One session: boto3's chain (environment, profile, instance role) gives both
        # this client and the credentials handed to delta-rs for the tables.
        self._session = boto3.Session(region_name=region)
        if client is None:
            client = self._session.client("s3", endpoint_url=endpoint_url)
        self._client = client

    def _key(self, path: str, *, allow_empty: bool = False) -> str:
        relative = check_path(path, allow_empty=allow_empty)
        return "/".join(part for part in (self.prefix, relative) if part)

    def _fail(self, action: str, key: str, exc: Exception) -> StoreError:
        where = f"s3://{self.bucket}/{key}"
        if self.endpoint_url:
            where += f" (endpoint {self.endpoint_url})"
        return StoreError(f"cannot {action} {where}: {exc}")

    def write(self, path: str, data: bytes) -> None:
        key = self._key(path)
        try:
            # A single PUT is atomic in S3: readers see the old object or the new one.
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except Exception as exc:  # botocore raises many unrelated types
            raise self._fail("write", key, exc) from exc

    def read(self, path: str) -> bytes:
        key = self._key(path)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            body: bytes = response["Body"].read()
        except self._client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"no such file: s3://{self.bucket}/{key}") from None
        except Exception as exc:
            raise self._fail("read", key, exc) from exc
        return body

    def _keys(self, folder_key: str) -> list[str]:
        search = f"{folder_key}/" if folder_key else ""
        paginator = self._client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=search):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def list(self, prefix: str = "") -> list[str]:
        folder_key = self._key(prefix, allow_empty=True)
        try:
            keys = self._keys(folder_key)
        except Exception as exc:
            raise self._fail("list", folder_key, exc) from exc
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(key[strip:] for key in keys)

    def delete(self, prefix: str) -> int:
        key = self._key(prefix)
        try:
            keys = self._keys(key)
            if self._exists(key):
                keys.append(key)
            for start in range(0, len(keys), _S3_DELETE_BATCH):
                batch = [{"Key": k} for k in keys[start : start + _S3_DELETE_BATCH]]
                response = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                if response.get("Errors"):
                    first = response["Errors"][0]
                    raise StoreError(f"{first.get('Key')}: {first.get('Message')}")
        except Exception as exc:
            raise self._fail("delete", key, exc) from exc
        return len(keys)

    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except self._client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def location(self, path: str = "") -> str:
        key = self._key(path, allow_empty=True)
        return f"s3://{self.bucket}/{key}"

    def _endpoint(self) -> str | None:
        # As boto3 finds it for this client: the setting, else the environment's.
        return (
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )

    def table_location(self, path: str) -> TableLocation:
        options = {"AWS_REGION": self._client.meta.region_name or "us-east-1"}
        if endpoint := self._endpoint():
            options["AWS_ENDPOINT_URL"] = endpoint
            options["AWS_ALLOW_HTTP"] = str(endpoint.startswith("http://")).lower()
        credentials = self._session.get_credentials()
        if credentials is not None:  # else delta-rs looks for them itself (instance role)
            frozen = credentials.get_frozen_credentials()
            options |= {"AWS_ACCESS_KEY_ID": frozen.access_key}
            options |= {"AWS_SECRET_ACCESS_KEY": frozen.secret_key}
            if frozen.token:
                options["AWS_SESSION_TOKEN"] = frozen.token
        if not os.environ.get(_LOCKING_PROVIDER_ENV):
            options |= _CONDITIONAL_PUT
        key = self._key(path)
        return TableLocation(f"s3://{self.bucket}/{key}", options, self._filesystem(options, key))

    def _filesystem(self, options: dict[str, str], key: str) -> pafs.FileSystem:
        configured = self._endpoint()
        endpoint = urlparse(configured) if configured else None
        s3 = pafs.S3FileSystem(
            access_key=options.get("AWS_ACCESS_KEY_ID"),
            secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
            session_token=options.get("AWS_SESSION_TOKEN"),
            region=options["AWS_REGION"],
            endpoint_override=endpoint.netloc if endpoint else None,
            scheme=endpoint.scheme if endpoint else "https",
        )
        return pafs.SubTreeFileSystem(f"{self.bucket}/{key}", s3)


def open_store(output: str, s3: S3Config | None = None) -> ResultStore:
    """``s3://bucket/prefix`` gives an ``S3Store``; a folder path a ``LocalStore``.

    Raises ``ValueError`` naming the output when ``check_output`` refuses it (a URL of
    another scheme is never taken for a folder).
    """
    try:
        check_output(output)
    except ValueError as exc:
        raise ValueError(f"output {exc}") from None
    if is_s3(output):
        bucket, prefix = split_s3(output)
        settings = s3 or S3Config()
        return S3Store(bucket, prefix, endpoint_url=settings.endpoint_url, region=settings.region)
    return LocalStore(Path(output))
