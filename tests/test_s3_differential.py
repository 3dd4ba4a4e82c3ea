"""The same boto3 operations against SeaweedFS's S3 gateway and ours, compared on what
clients rely on: listings (keys, common prefixes, truncation and continuation, KeyCount,
start-after), error codes and statuses, and headers (ETag, Content-Length, Content-Range,
Content-Type, ``x-amz-meta-*``).

Each scenario is a function from a client and a fresh bucket to a plain value (what a client
sees, with dates, request ids and opaque tokens left out); the test asserts both servers give
the same value. Where SeaweedFS deviates from AWS's documented behaviour, the scenario says
so and both are compared against AWS's documented answer instead.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.s3net import MiB, S3Net, s3_net
from tests.seaweedfs import seaweedfs

Client = Any
Scenario = Callable[[Client, str], Any]
_names = itertools.count()


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Net]:
    with s3_net(tmp_path_factory.mktemp("s3net")) as net:
        yield net


@pytest.fixture(scope="module")
def theirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """SeaweedFS's S3 gateway (no identities configured: any key is accepted). By default it
    deletes a bucket with everything in it; S3 refuses (BucketNotEmpty), so we ask it to."""
    folder = tmp_path_factory.mktemp("seaweedfs")
    with seaweedfs(folder, extra=["-s3.allowDeleteBucketNotEmpty=false"]) as endpoint:
        yield boto3.client(
            "s3",
            endpoint_url=f"http://{endpoint}",
            aws_access_key_id="any",
            aws_secret_access_key="any",
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


def both(ours: S3Net, theirs: Client, scenario: Scenario) -> tuple[Any, Any]:
    """Run ``scenario`` on each server in a bucket of its own; what each client saw."""
    seen = []
    for client in (ours.client(), theirs):
        bucket = f"diff-{next(_names)}"
        client.create_bucket(Bucket=bucket)
        seen.append(scenario(client, bucket))
    return seen[0], seen[1]


def failure(call: Callable[[], object]) -> tuple[int, str]:
    """(HTTP status, S3 error code) of a call that must fail."""
    with pytest.raises(ClientError) as failed:
        call()
    response = failed.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def md5(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


KEYS = ["a/1", "a/2", "a/b/3", "a/b/4", "b", "c/", "c/d", "e f+g", "z/ü", "zz"]


def _fill(s3: Client, bucket: str) -> None:
    for key in KEYS:
        # "c/" empty, as a folder marker is: SeaweedFS makes a key ending in "/" a directory
        # and drops its bytes (S3 stores them).
        s3.put_object(Bucket=bucket, Key=key, Body=b"" if key.endswith("/") else key.encode())


def _page(page: dict[str, Any]) -> dict[str, Any]:
    """What a client reads from a listing page (tokens only as present or not)."""
    return {
        "keys": [(o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", [])],
        "prefixes": [p["Prefix"] for p in page.get("CommonPrefixes", [])],
        "truncated": page["IsTruncated"],
        "key_count": page.get("KeyCount"),
        "has_next_token": "NextContinuationToken" in page,
    }


def _pages(s3: Client, bucket: str, **args: Any) -> list[dict[str, Any]]:
    pages, token = [], None
    while True:
        page = s3.list_objects_v2(
            Bucket=bucket, **args, **({"ContinuationToken": token} if token else {})
        )
        pages.append(_page(page))
        if not page["IsTruncated"]:
            return pages
        token = page["NextContinuationToken"]


def listings(s3: Client, bucket: str) -> dict[str, Any]:
    _fill(s3, bucket)
    v1 = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=3)
    v1_next = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=3, Marker=v1["NextMarker"])
    return {
        "all": _pages(s3, bucket),
        "by_two": _pages(s3, bucket, MaxKeys=2),
        "folded_by_two": _pages(s3, bucket, Delimiter="/", MaxKeys=2),
        "prefix_a": _pages(s3, bucket, Prefix="a/", Delimiter="/"),
        "prefix_partial": _pages(s3, bucket, Prefix="a/b"),
        # The last entry a prefix over two keys: the page is full, and nothing is left.
        "prefix_a_by_three": _pages(s3, bucket, Prefix="a/", Delimiter="/", MaxKeys=3),
        "max_keys_zero": _page(s3.list_objects_v2(Bucket=bucket, MaxKeys=0)),
        "owner": [
            "Owner" in s3.list_objects_v2(Bucket=bucket, **fetch)["Contents"][0]
            for fetch in ({}, {"FetchOwner": True})
        ]
        + ["Owner" in s3.list_objects(Bucket=bucket)["Contents"][0]],
        "prefix_none": _pages(s3, bucket, Prefix="nothing/"),
        "start_after": _pages(s3, bucket, StartAfter="b"),
        # A start-after inside a common prefix ("a/2") is left out: AWS documents no answer
        # and servers differ (SeaweedFS folds "a/b/3" into "a/b/", under a "/" delimiter).
        "start_after_folded": _pages(s3, bucket, StartAfter="b", Delimiter="/"),
        "start_after_end": _pages(s3, bucket, StartAfter="zzz"),
        "v1": [_page(v1), _page(v1_next)],
        "v1_marker": _page(s3.list_objects(Bucket=bucket, Marker="c/d")),
        # No versioning: each object is its one version, "null" (what cleanup tools list).
        "versions": [
            (v["Key"], v["VersionId"], v["IsLatest"], v["Size"])
            for v in s3.list_object_versions(Bucket=bucket, Prefix="a/")["Versions"]
        ],
    }


def test_listings_agree(ours: S3Net, theirs: Client) -> None:
    mine, seaweed = both(ours, theirs, listings)
    assert mine == seaweed
    # And they are what S3 documents, not merely the same.
    assert [k for k, _, _ in mine["all"][0]["keys"]] == KEYS
    assert mine["folded_by_two"][0]["prefixes"] == ["a/"]
    assert [len(p["keys"]) + len(p["prefixes"]) for p in mine["folded_by_two"]] == [2, 2, 2]
    assert [p["truncated"] for p in mine["prefix_a_by_three"]] == [False]
    assert mine["max_keys_zero"]["truncated"] is False
    assert mine["owner"] == [False, True, True]


def errors(s3: Client, bucket: str) -> dict[str, Any]:
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    etag = md5(b"0123456789")
    later = datetime.now(UTC) + timedelta(days=1)
    earlier = datetime.now(UTC) - timedelta(days=1)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"x")
    last = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=2, Body=b"y")
    parts = [{"PartNumber": 1, "ETag": small["ETag"]}, {"PartNumber": 2, "ETag": last["ETag"]}]
    seen = {
        "no_key": failure(lambda: s3.get_object(Bucket=bucket, Key="missing")),
        "no_key_head": failure(lambda: s3.head_object(Bucket=bucket, Key="missing")),
        "no_bucket": failure(lambda: s3.get_object(Bucket=f"{bucket}-not", Key="k")),
        "no_bucket_list": failure(lambda: s3.list_objects_v2(Bucket=f"{bucket}-not")),
        "no_bucket_head": failure(lambda: s3.head_bucket(Bucket=f"{bucket}-not")),
        "no_bucket_delete": failure(lambda: s3.delete_bucket(Bucket=f"{bucket}-not")),
        "not_empty": failure(lambda: s3.delete_bucket(Bucket=bucket)),
        "range_past_end": failure(lambda: s3.get_object(Bucket=bucket, Key="k", Range="bytes=10-")),
        "if_match": failure(lambda: s3.get_object(Bucket=bucket, Key="k", IfMatch='"00"')),
        "if_none_match": failure(lambda: s3.get_object(Bucket=bucket, Key="k", IfNoneMatch=etag)),
        "if_modified_since": failure(
            lambda: s3.get_object(Bucket=bucket, Key="k", IfModifiedSince=later)
        ),
        "if_unmodified_since": failure(
            lambda: s3.get_object(Bucket=bucket, Key="k", IfUnmodifiedSince=earlier)
        ),
        "head_if_match": failure(lambda: s3.head_object(Bucket=bucket, Key="k", IfMatch='"00"')),
        "head_if_none_match": failure(
            lambda: s3.head_object(Bucket=bucket, Key="k", IfNoneMatch=etag)
        ),
        "no_upload": failure(lambda: s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload + "0")),
        "part_too_small": failure(
            lambda: s3.complete_multipart_upload(
                Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
            )
        ),
        "wrong_part_etag": failure(
            lambda: s3.complete_multipart_upload(
                Bucket=bucket,
                Key="mp",
                UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": small["ETag"]}]},
            )
        ),
    }
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)
    seen["aborted_upload"] = failure(
        lambda: s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload)
    )
    # Conditions that hold are not errors.
    seen["if_match_holds"] = s3.get_object(Bucket=bucket, Key="k", IfMatch=etag)["Body"].read()
    seen["delete_missing"] = s3.delete_object(Bucket=bucket, Key="missing")["ResponseMetadata"][
        "HTTPStatusCode"
    ]
    return seen


def test_errors_agree(ours: S3Net, theirs: Client) -> None:
    mine, seaweed = both(ours, theirs, errors)
    assert mine == seaweed
    assert mine["no_key"] == (404, "NoSuchKey")
    assert mine["no_bucket"] == (404, "NoSuchBucket")
    assert mine["not_empty"] == (409, "BucketNotEmpty")
    assert mine["range_past_end"] == (416, "InvalidRange")
    assert mine["if_match"] == (412, "PreconditionFailed")
    assert mine["if_none_match"] == (304, "304")
    assert mine["part_too_small"] == (400, "EntityTooSmall")
    assert mine["delete_missing"] == 204


def headers(s3: Client, bucket: str) -> dict[str, Any]:
    body = bytes(range(256)) * 40  # 10,240 bytes
    put = s3.put_object(
        Bucket=bucket, Key="typed", Body=body, ContentType="text/x-test; charset=utf-8",
        Metadata={"Colour": "blue", "two-words": "a b"},
    )  # fmt: skip
    s3.put_object(Bucket=bucket, Key="untyped", Body=b"")
    big = bytes(range(251)) * (11 * MiB // 251)
    transfer = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_fileobj(io.BytesIO(big), bucket, "multi", Config=transfer)

    def got(key: str, **args: Any) -> dict[str, Any]:
        response = s3.get_object(Bucket=bucket, Key=key, **args)
        data = response["Body"].read()
        return {
            "status": response["ResponseMetadata"]["HTTPStatusCode"],
            "etag": response["ETag"],
            "length": response["ContentLength"],
            "range": response.get("ContentRange"),
            "type": response["ContentType"],
            "meta": response["Metadata"],
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    head = s3.head_object(Bucket=bucket, Key="typed")
    multi = s3.head_object(Bucket=bucket, Key="multi")
    return {
        "put_etag": put["ETag"],
        "head": (head["ETag"], head["ContentLength"], head["ContentType"], head["Metadata"]),
        "accept_ranges": head["AcceptRanges"],
        "last_modified": isinstance(head["LastModified"], datetime),
        "get": got("typed"),
        "range": got("typed", Range="bytes=100-299"),
        "range_open": got("typed", Range="bytes=10000-"),
        "range_suffix": got("typed", Range="bytes=-17"),
        "range_over_end": got("typed", Range="bytes=10000-99999"),
        "empty": got("untyped"),
        "multi_etag": multi["ETag"],
        "multi_length": multi["ContentLength"],
        "multi_range": got("multi", Range=f"bytes={5 * MiB - 3}-{5 * MiB + 2}"),
    }


def test_headers_agree(ours: S3Net, theirs: Client) -> None:
    mine, seaweed = both(ours, theirs, headers)
    # An object stored without a Content-Type is served as binary/octet-stream by S3;
    # SeaweedFS says application/octet-stream. Both are held to S3's.
    for case in ("empty", "multi_range"):
        assert seaweed[case]["type"] == "application/octet-stream"
        seaweed[case]["type"] = "binary/octet-stream"
    body = bytes(range(256)) * 40
    assert mine["put_etag"] == md5(body)
    assert mine["range"]["range"] == "bytes 100-299/10240"
    assert mine["range_over_end"]["range"] == "bytes 10000-10239/10240"
    assert mine["head"][3] == {"colour": "blue", "two-words": "a b"}
    assert mine["multi_etag"].endswith('-3"')
    assert mine == seaweed


def copies_and_deletes(s3: Client, bucket: str) -> dict[str, Any]:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source", Metadata={"kept": "yes"})
    copy = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    s3.copy_object(
        Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE", Metadata={"new": "1"}, ContentType="text/plain",
    )  # fmt: skip
    replaced = s3.head_object(Bucket=bucket, Key="replaced")
    copy_meta = s3.head_object(Bucket=bucket, Key="copy")["Metadata"]
    deleted = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "src"}, {"Key": "copy"}, {"Key": "never"}]}
    )
    return {
        "copy_etag": copy["CopyObjectResult"]["ETag"],
        "copy_meta": copy_meta,
        "replaced": (replaced["Metadata"], replaced["ContentType"], replaced["ContentLength"]),
        "self_copy": failure(
            lambda: s3.copy_object(
                Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "replaced"}
            )
        ),
        "missing_source": failure(
            lambda: s3.copy_object(
                Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "never"}
            )
        ),
        "deleted": sorted(d["Key"] for d in deleted["Deleted"]),  # a missing key too, as S3
        "errors": deleted.get("Errors", []),
        "left": [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])],
    }


def test_copies_and_deletes_agree(ours: S3Net, theirs: Client) -> None:
    mine, seaweed = both(ours, theirs, copies_and_deletes)
    assert mine["copy_etag"] == md5(b"source")
    # CopyObjectResult's ETag is quoted in S3's documented answer; SeaweedFS leaves the
    # quotes off. Both are held to S3's.
    assert seaweed["copy_etag"] == md5(b"source").strip('"')
    seaweed["copy_etag"] = md5(b"source")
    assert mine["deleted"] == ["copy", "never", "src"]
    assert mine == seaweed
