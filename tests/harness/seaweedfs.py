"""A real S3-compatible object store for the tests: SeaweedFS (Apache-2.0; `weed server` with its S3 gateway), the
binary built by `.ci/build-seaweedfs.sh` into the same cache as livekit-server. On loopback only, a temporary data
dir, credentials made up for the run (its S3 config file), always stopped."""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .livekit_server import bin_dir
from .procs import HarnessError, ManagedProcess, distinct_free_ports

BUILD_COMMAND = ".ci/build-seaweedfs.sh"
READY_TIMEOUT_S = 60.0


def require_weed() -> Path:
    path = bin_dir() / "weed"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise HarnessError(
            f"SeaweedFS (weed) not found at {path} (VOXARENA_BIN_DIR={os.environ.get('VOXARENA_BIN_DIR', '<unset>')}); "
            f"build it first with `{BUILD_COMMAND}` (make seaweedfs; make test runs it)"
        )
    return path


@dataclass
class S3Server:
    """A running SeaweedFS S3 gateway: `endpoint` is its http:// URL; the keys are an admin identity's; `bucket`
    exists (each bucket takes volumes of its own in SeaweedFS: tests share it, each under a prefix of its own)."""

    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str
    process: ManagedProcess
    # weed serves its components' gRPC on unix sockets too, at paths of its own choosing
    # (/tmp/seaweedfs-<component>-grpc-<port>.sock); removed with it
    sockets: tuple[Path, ...] = ()

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=3,
                read_timeout=10,
                retries={"max_attempts": 1},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """The bucket's objects under `prefix`: key -> size."""
        listed = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return {o["Key"]: int(o["Size"]) for o in listed.get("Contents", ())}

    def alive(self) -> bool:
        return self.process.alive()

    def stop(self) -> int | None:
        # weed lingers for 10 s and more after SIGTERM (its components' shutdown hooks); its data is a temporary
        # dir, so it is killed after a short grace
        rc = self.process.stop(timeout=3.0)
        for sock in self.sockets:
            sock.unlink(missing_ok=True)
        return rc


def _accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def start_seaweedfs(workdir: Path, *, ready_timeout: float = READY_TIMEOUT_S) -> S3Server:
    """`weed server` (master, volume, filer, S3) on loopback ports of its own; ready once an object written
    through S3 reads back."""
    binary = require_weed()
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    access, secret = "vx" + secrets.token_hex(8), secrets.token_urlsafe(30)
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "voxarena-tests",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc) = distinct_free_ports(
        "127.0.0.1", [socket.SOCK_STREAM] * 8
    )
    argv = [
        str(binary),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64",
        "-master.telemetry=false",
        "-volume.max=32",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-s3.localSocket={workdir / 's3.sock'}",
    ]
    proc = ManagedProcess("seaweedfs", argv, workdir / "weed.log", cwd=workdir)
    server = S3Server(
        endpoint=f"http://127.0.0.1:{s3}",
        bucket="voxarena-tests",
        access_key_id=access,
        secret_access_key=secret,
        region="us-east-1",
        process=proc,
        sockets=tuple(
            Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock")
            for name, port in (("master", master_grpc), ("volume", volume_grpc), ("filer", filer_grpc), ("s3", s3_grpc))
        ),
    )
    try:
        proc.wait_until(lambda: _accepts(s3), timeout=ready_timeout, what="listening for S3")

        def round_trip() -> bool:
            c = server.client()
            if server.bucket not in {b["Name"] for b in c.list_buckets().get("Buckets", ())}:
                c.create_bucket(Bucket=server.bucket)
            c.put_object(Bucket=server.bucket, Key="ready/probe", Body=b"ok")
            ok = c.get_object(Bucket=server.bucket, Key="ready/probe")["Body"].read() == b"ok"
            c.delete_object(Bucket=server.bucket, Key="ready/probe")
            return bool(ok)

        proc.wait_until(round_trip, timeout=ready_timeout, what="storing an object through S3")
    except BaseException:
        server.stop()
        raise
    return server
