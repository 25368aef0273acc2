"""Recordings in S3 or an S3-compatible object store (``VOXARENA_RECORDINGS_URL=s3://bucket/prefix``).

The job still writes the call's file locally while the call runs (LiveKit's recorder appends to a file), under
``<data dir>/recordings-pending/<tenant>/<session>.ogg``; `finalize` uploads it to ``<prefix>/<tenant>/<session>.ogg``
and removes the local copy only once the object is there with the file's size. A failed upload leaves the file
where it is and raises `FinalizeFailed` (the job stores why on the session). The API streams the object back (a
Range passed through to the store, so a player's 206 comes from it), deletes it, and any node reads what any
other wrote.

boto3 is synchronous: every call runs in a thread (`asyncio.to_thread`), the event loop never waits on the network.
Its client is thread-safe once made, and made lazily, in a thread, on first use (making one reads config files)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .recordings import (
    CONTENT_TYPE,
    BadKey,
    ByteRange,
    FinalizeFailed,
    RangeNotSatisfiable,
    RecordingStream,
    StorageMisconfigured,
    StorageUnavailable,
    check_key,
)

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger("voxarena.recordings")

CHUNK = 64 * 1024
# missing-object error codes across stores (AWS answers a HEAD's 404 with the bare status)
_MISSING = {"NoSuchKey", "404", "NotFound"}
_HEAD_BUCKET = {
    301: "it is in another region (HTTP 301): set VOXARENA_RECORDINGS_S3_REGION to the bucket's",
    400: "the store refused the request (HTTP 400): check VOXARENA_RECORDINGS_S3_REGION and the endpoint",
    403: "access denied (HTTP 403): the key is refused, or lacks s3:ListBucket on the bucket",
    404: "no such bucket (HTTP 404): create it first",
}


class S3Recordings:
    """Recordings as objects ``<prefix>/<tenant>/<session id>.ogg`` in one bucket."""

    name = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str,
        spool: Path,
        endpoint: str = "",
        region: str = "",
        access_key_id: str = "",
        secret_access_key: str = "",
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.spool = Path(spool)
        self.endpoint = endpoint
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self._access = (access_key_id, secret_access_key)
        self._timeouts = (connect_timeout, read_timeout, max_attempts)
        self._client: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Recordings:
        from .settings import s3_location

        bucket, prefix = s3_location(settings.recordings_url)
        return cls(
            bucket=bucket,
            prefix=prefix,
            spool=Path(settings.data_dir) / "recordings-pending",
            endpoint=settings.recordings_s3_endpoint,
            region=settings.recordings_s3_region,
            access_key_id=settings.recordings_s3_access_key_id,
            secret_access_key=settings.recordings_s3_secret_access_key,
        )

    def __repr__(self) -> str:
        return f"S3Recordings(s3://{self.bucket}/{self.prefix}, endpoint={self.endpoint or 'AWS'})"

    # --- names ---

    def object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _pending(self, key: str) -> Path:
        return self.spool / check_key(key)

    @property
    def client(self) -> Any:
        """The boto3 S3 client (blocking: call it from a thread)."""
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                connect, read, attempts = self._timeouts
                access, secret = self._access
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint or None,
                    region_name=self.region,
                    aws_access_key_id=access or None,
                    aws_secret_access_key=secret or None,
                    config=Config(
                        connect_timeout=connect,
                        read_timeout=read,
                        retries={"max_attempts": attempts, "mode": "standard"},
                        # an S3-compatible store at its own endpoint serves buckets as paths, not host names
                        s3={"addressing_style": "path" if self.endpoint else "auto"},
                        signature_version="s3v4",
                        # stores other than AWS may not know the newer checksum headers
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                    ),
                )
            return self._client

    # --- the job ---

    def writing_path(self, key: str) -> Path:
        path = self._pending(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def finalize(self, key: str) -> int:
        """Uploads the finished file; the local copy goes only once the object holds all of it."""
        path = self._pending(key)
        if not path.is_file():
            log.error("recording %s: no file at %s to upload", key, path)
            raise FinalizeFailed("the recording's file was not found to upload")
        size = path.stat().st_size
        target = self.object_key(key)
        where = f"s3://{self.bucket}/{target}"
        try:
            self.client.upload_file(str(path), self.bucket, target, ExtraArgs={"ContentType": CONTENT_TYPE})
            stored = int(self.client.head_object(Bucket=self.bucket, Key=target)["ContentLength"])
        except Exception as e:
            # the session (which its tenant reads) says why; where the file stays is the operator's, in the log
            log.error("recording %s: upload to %s failed, the file is kept at %s", key, where, path, exc_info=True)
            raise FinalizeFailed(f"the upload to object storage failed: {_reason(e)}") from e
        if stored != size:
            log.error("recording %s: %s holds %d of %d bytes, the file is kept at %s", key, where, stored, size, path)
            raise FinalizeFailed(f"object storage holds {stored} of the recording's {size} bytes")
        # the tenant's folder stays: removing it could race another call's recorder about to open its file there
        path.unlink()
        return size

    def leftovers(self) -> list[str]:
        """The files in the pending folder: a call's being written, or one that was not kept."""
        keys = []
        for path in sorted(self.spool.glob("*/*.ogg")) if self.spool.is_dir() else ():
            key = f"{path.parent.name}/{path.name}"
            try:
                keys.append(check_key(key))
            except BadKey:
                log.warning("recording leftovers: %s is not a recording's file, left alone", path)
        return keys

    # --- the API ---

    async def open(self, key: str, *, byte_range: ByteRange | None = None) -> RecordingStream | None:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if byte_range is not None:
            kwargs["Range"] = byte_range.header()
        try:
            got = await asyncio.to_thread(lambda: self.client.get_object(**kwargs))
        except ClientError as e:
            code = _code(e)
            if code in _MISSING:
                return None
            if code == "InvalidRange" or _status(e) == 416:
                size = e.response.get("Error", {}).get("ActualObjectSize")
                raise RangeNotSatisfiable(int(size) if size is not None and str(size).isdigit() else None) from e
            raise self._unavailable("reading", key, e) from e
        except BotoCoreError as e:
            raise self._unavailable("reading", key, e) from e
        body = got["Body"]
        content_range = got.get("ContentRange") if byte_range is not None else None
        return RecordingStream(
            size=int(got["ContentLength"]),
            content_range=content_range,
            chunks=_chunks(body),
            close=lambda: asyncio.to_thread(body.close),
        )

    async def delete(self, key: str) -> bool:
        """The object and any local copy the upload left (a failed one); True when either was there."""
        from botocore.exceptions import BotoCoreError, ClientError

        target = self.object_key(key)

        def run() -> bool:
            existed = self._exists(target)
            if existed:
                self.client.delete_object(Bucket=self.bucket, Key=target)
            pending = self._pending(key)
            try:
                pending.unlink()
            except FileNotFoundError:
                return existed
            return True

        try:
            return await asyncio.to_thread(run)
        except (ClientError, BotoCoreError) as e:
            raise self._unavailable("deleting", key, e) from e

    def _unavailable(self, doing: str, key: str, e: BaseException) -> StorageUnavailable:
        log.error("recording %s: %s s3://%s/%s failed", key, doing, self.bucket, self.object_key(key), exc_info=e)
        return StorageUnavailable(f"object storage failed {doing} the recording: {_reason(e)}")

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._exists, self.object_key(key))

    def _exists(self, target: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=target)
        except ClientError as e:
            if _code(e) in _MISSING or _status(e) == 404:
                return False
            raise
        return True

    async def check(self) -> None:
        """The bucket answers with these credentials (a HEAD of the bucket), or a message naming what failed."""

        def run() -> None:
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except Exception as e:
                # a HEAD's answer has no body: its status is all the store says
                why = _HEAD_BUCKET.get(_status(e) or 0) or _why(e)
                raise StorageMisconfigured(
                    f"VOXARENA_RECORDINGS_URL: the bucket {self.bucket!r} at "
                    f"{self.endpoint or 'AWS S3 (' + self.region + ')'} cannot be used: {why}"
                ) from e

        await asyncio.to_thread(run)


async def _chunks(body: Any) -> AsyncIterator[bytes]:
    while True:
        chunk = await asyncio.to_thread(body.read, CHUNK)
        if not chunk:
            return
        yield chunk


def _code(e: Any) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))


def _status(e: Any) -> int | None:
    status = getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _reason(e: BaseException) -> str:
    """Why, for the session (its tenant reads it): the store's error code, or that it could not be reached; never
    the endpoint, the bucket or a path (those are in the log)."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    seen: BaseException | None = e
    while seen is not None:
        if _code(seen):
            status = _status(seen)
            return f"{_code(seen)}{f' (HTTP {status})' if status else ''}"
        if isinstance(seen, ConnectTimeoutError | ReadTimeoutError):
            return "the store did not answer in time"
        if isinstance(seen, BotoConnectionError | ConnectionError):
            return "the store could not be reached"
        seen = seen.__cause__ or seen.__context__
    return type(e).__name__


def _why(e: BaseException) -> str:
    """A short reason: the store's error code and message, or the connection failure."""
    code = _code(e)
    if code:
        message = getattr(e, "response", {}).get("Error", {}).get("Message") or ""
        status = _status(e)
        return f"{code}{f' (HTTP {status})' if status else ''}{': ' + message if message else ''}"
    return f"{type(e).__name__}: {e}"
