"""A real S3 server for the tests: moto in server mode, as its own process on a free loopback port, with
IAM authentication on (requests are signed and checked against the users' policies), and a TCP proxy
that can cut an upload in the middle.

moto checks IAM identity policies (Allow/Deny per action and resource, prefixes included) and bucket
policies' Deny statements; it does not check a key's expiry, STS session policies or ACL grants, and keeps
everything in memory (a restarted server is empty). See docs/storage-s3.md for what else it does not
reproduce of real S3 services.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fl_chain.chain.setup.localnode import free_port
from fl_chain.proctree import stop_tree

# moto lets this many requests through unsigned before it checks credentials: the three that create the
# admin user, its policy and its key; every request after them is authenticated.
_BOOTSTRAP_REQUESTS = 3
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass(frozen=True)
class Credentials:
    """An access key pair of a moto IAM user."""

    key: str
    secret: str

    def env(self, endpoint: str) -> dict[str, str]:
        """The standard AWS environment variables for this key and `endpoint`."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # never probe an instance metadata address
        }


class MotoServer:
    """`python -m moto.server` on 127.0.0.1:`port`, stopped by PID; `admin` may do everything. Without
    `auth`, moto accepts any key (and so the same key after a restart)."""

    def __init__(self, log: Path, port: int | None = None, auth: bool = True) -> None:
        self.log, self.port, self.auth = log, port or free_port(), auth
        self.process: subprocess.Popen | None = None
        self.admin = Credentials("", "")

    @property
    def endpoint(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoServer:
        """Start the server, wait until it answers, create the admin user."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        if self.auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_BOOTSTRAP_REQUESTS)
        with open(self.log, "a") as out:
            from tests.conftest import watched_popen

            self.process = watched_popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        if self.auth:
            self.admin = self._user("admin", ALLOW_ALL, self._client("iam", Credentials("boot", "boot")))
        else:  # any key is accepted: one that survives a restart
            self.admin = Credentials("testing", "testing")
        return self

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2).close()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server by PID (SIGTERM, SIGKILL if it lingers)."""
        if self.process is not None:
            stop_tree(self.process.pid, timeout=5)
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """Kill the server at once by PID (SIGKILL), as a crash would."""
        process, self.process = self.process, None  # once, even if two threads ask
        if process is not None:
            process.kill()
            process.wait(timeout=10)

    def _client(self, service: str, creds: Credentials | None = None, endpoint: str | None = None) -> Any:
        import boto3

        creds = creds or self.admin
        return boto3.client(
            service,
            endpoint_url=endpoint or self.endpoint,
            aws_access_key_id=creds.key,
            aws_secret_access_key=creds.secret,
            region_name="us-east-1",
        )

    def s3(self, creds: Credentials | None = None) -> Any:
        """A boto3 S3 client (admin by default)."""
        return self._client("s3", creds)

    def bucket(self, prefix: str = "b") -> str:
        """A new bucket with a unique name."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.s3().create_bucket(Bucket=name)
        return name

    def user(self, policy: dict) -> Credentials:
        """A new IAM user with this inline policy, and its access key."""
        return self._user(f"u-{uuid.uuid4().hex[:10]}", policy, self._client("iam"))

    @staticmethod
    def _user(name: str, policy: dict, iam: Any) -> Credentials:
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="store", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def keys(self, bucket: str) -> list[str]:
        """Every key in `bucket`."""
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def read_only(*resources: str, deny: tuple[str, ...] = ()) -> dict:
    """An IAM policy that may read (get, list) `resources` (bucket or bucket/prefix) and nothing in `deny`."""
    allow = [f"arn:aws:s3:::{r}" for r in resources] + [f"arn:aws:s3:::{r}/*" for r in resources]
    statements: list[dict] = [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": allow}
    ]
    if deny:
        denied = [f"arn:aws:s3:::{d}/*" for d in deny]
        statements.append({"Effect": "Deny", "Action": "s3:*", "Resource": denied})
    return {"Version": "2012-10-17", "Statement": statements}
