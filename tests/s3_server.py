"""A real S3-compatible endpoint for the tests: moto's threaded server on 127.0.0.1 only.

The server starts with IAM authentication on (after one IAM user, its access key and a bucket
are made), so a wrong or missing credential is refused as a real S3 endpoint would refuse it.
The environment that points clients at it (``AWS_ENDPOINT_URL``, the user's key) is what
subprocesses, dask workers and DVC inherit; instance metadata lookups are off (loopback only).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

BUCKET = "fusioner"
_ALLOW_ALL = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "*", "Resource": "*"}]})


@dataclass(frozen=True)
class S3Endpoint:
    """Where the server listens and the environment of a client with valid credentials."""

    url: str
    env: dict[str, str]

    @property
    def secret(self) -> str:
        return self.env["AWS_SECRET_ACCESS_KEY"]


@contextmanager
def moto_s3() -> Iterator[S3Endpoint]:
    """Start the server on a free loopback port, make a user, a key and ``BUCKET``, turn
    authentication on; stop it afterwards."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        base = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": url,
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "NO_PROXY": host}
        setup = {"endpoint_url": url, "region_name": "us-east-1",
                 "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        _post(url, "reset", b"")  # moto's backends live in this process: start from none
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="fusioner")
        iam.put_user_policy(UserName="fusioner", PolicyName="all", PolicyDocument=_ALLOW_ALL)
        key = iam.create_access_key(UserName="fusioner")["AccessKey"]
        boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
        _set_auth(url, "0")  # from now on every request must be signed by a known key
        yield S3Endpoint(url, {**base, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                               "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]})
    finally:
        try:
            _set_auth(url, "inf")
        finally:
            server.stop()


@contextmanager
def moto_s3_env() -> Iterator[S3Endpoint]:
    """``moto_s3`` with this process's environment pointing at it (inherited by subprocesses,
    dask workers and DVC) while it runs."""
    import pytest
    from s3fs import S3FileSystem

    with moto_s3() as endpoint, pytest.MonkeyPatch.context() as patch:
        for key, value in endpoint.env.items():
            patch.setenv(key, value)
        S3FileSystem.clear_instance_cache()  # a cached client would still call an earlier server
        try:
            yield endpoint
        finally:
            S3FileSystem.clear_instance_cache()


def _set_auth(url: str, count: str) -> None:
    """moto's switch: authenticate every request after ``count`` more unauthenticated ones."""
    _post(url, "reset-auth", count.encode())


def _post(url: str, action: str, body: bytes) -> None:
    """POST ``body`` to one of moto's ``/moto-api/`` control endpoints."""
    request = urllib.request.Request(f"{url}/moto-api/{action}", data=body,
                                     headers={"Content-Type": "text/plain"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        response.read()
