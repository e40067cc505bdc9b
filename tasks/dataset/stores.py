"""Where result files live: a local folder or an S3 bucket, behind one small interface.

A store holds files under relative, ``/``-separated paths such as
``results/date=2024-05-01/run_id=abc/part-0.parquet``. Implementations provide five
primitives (see ``ResultStore``); ``tasks.dataset.conformance`` is the conformance
suite every implementation passes.

Errors: a missing file raises ``FileNotFoundError``; any other failure raises
``StoreError`` (an ``OSError``) whose message names the location.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

from tasks.matrix import S3Config

# Local temp files start with this; list() never reports them.
_TEMP_PREFIX = ".tmp-"
# S3 DeleteObjects accepts at most this many keys per call.
_S3_DELETE_BATCH = 1000


class StoreError(OSError):
    """A store operation failed for a reason other than a missing file."""


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
        if client is None:
            import boto3  # imported here so local-only use never loads it

            client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
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


def open_store(output: str, s3: S3Config | None = None) -> ResultStore:
    """``s3://bucket/prefix`` gives an ``S3Store``; anything else is a local folder."""
    if output.startswith("s3://"):
        bucket, _, prefix = output.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"output {output!r}: no bucket; use s3://<bucket>/<prefix>")
        settings = s3 or S3Config()
        return S3Store(bucket, prefix, endpoint_url=settings.endpoint_url, region=settings.region)
    if not output:
        raise ValueError("output is empty; give a folder path or s3://<bucket>/<prefix>")
    return LocalStore(Path(output))
