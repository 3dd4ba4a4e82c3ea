"""The S3 API's routes: a thin aiohttp layer over :class:`~validator.s3.service.S3Service`.

Path-style addressing (``/bucket/key``); every request is SigV4-signed (header or presigned
URL). Operations are told apart as S3 does, by method and query (``?uploads``,
``?uploadId=``, ``?list-type=2``, ``?delete``, ``x-amz-copy-source``). Errors are S3 XML,
mapped in one place (``s3_errors``); bad input is a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote, unquote, unquote_to_bytes

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.typedefs import Handler
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from validator.downloads import DownloadError
from validator.gateway import Gateway
from validator.s3 import xml
from validator.s3.auth import Authorized, verify
from validator.s3.body import BodyReader
from validator.s3.errors import S3Error
from validator.s3.keys import KEY_FILE, AccessKeys
from validator.s3.service import (
    MAX_BUCKETS,
    MAX_PARTS,
    MAX_UPLOADS,
    ObjectMeta,
    S3Service,
    check_bucket_name,
    check_key,
)
from validator.s3.xml import element
from validator.settings import ValidatorSettings
from validator.streaming import send_stream
from validator.uploads import UploadError

log = logging.getLogger(__name__)

SERVICE = web.AppKey("s3_service", S3Service)
KEYS = web.AppKey("s3_keys", AccessKeys)
AUTH = web.RequestKey("s3_auth", Authorized)
REQUEST_ID = web.RequestKey("s3_request_id", str)
MAX_XML = 4 * 2**20  # CompleteMultipartUpload of 10,000 parts, DeleteObjects of 1,000 keys
DEFAULT_TYPE = "binary/octet-stream"  # S3's, when a PUT names none
_UNAVAILABLE = {"not_enough_miners", "not_enough_receipts", "not_enough_shards"}


def _error_response(request: web.Request, exc: S3Error) -> web.Response:
    request_id = request.get(REQUEST_ID, "")
    headers = {"x-amz-request-id": request_id}
    if request.method == "HEAD":  # a HEAD answer has no body: the status says it
        return web.Response(status=exc.status, headers=headers)
    body = xml.error(exc.code, exc.message, exc.resource, request_id)
    return web.Response(
        status=exc.status, body=body, content_type="application/xml", headers=headers
    )


@web.middleware
async def s3_errors(  # noqa: PLR0911 - the one place every error becomes S3 XML
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Every failure as S3 XML, here and nowhere else."""
    request[REQUEST_ID] = uuid.uuid4().hex[:16].upper()
    try:
        response = await handler(request)
    except S3Error as exc:
        return _error_response(request, exc)
    except web.HTTPMethodNotAllowed:
        exc3 = S3Error("MethodNotAllowed", "the method is not allowed on this resource")
        return _error_response(request, exc3)
    except web.HTTPException as exc:
        if exc.status == 404:
            return _error_response(request, S3Error("InvalidRequest", "no such S3 resource"))
        if 400 <= exc.status < 500:
            return _error_response(request, S3Error("InvalidRequest", exc.reason))
        raise
    except UploadError as exc:
        code = "ServiceUnavailable" if exc.code in _UNAVAILABLE else "InvalidRequest"
        return _error_response(request, S3Error(code, exc.message))
    except DownloadError as exc:
        return _error_response(request, S3Error("ServiceUnavailable", exc.message))
    except DBAPIError as exc:
        log.warning("database unavailable", extra={"path": request.path, "why": str(exc)[:200]})
        return _error_response(
            request, S3Error("ServiceUnavailable", "the validator cannot reach its database")
        )
    except ConnectionError:
        raise  # the client went away (mid-GET, say): nothing to answer, nothing to log as ours
    except Exception:
        log.exception("unhandled error in S3 %s %s", request.method, request.path)
        return _error_response(
            request, S3Error("InternalError", "we encountered an internal error")
        )
    response.headers["x-amz-request-id"] = request[REQUEST_ID]
    return response


def _check_uri(request: web.Request) -> None:
    """A path that is not UTF-8 once unquoted names no bucket or key: 400, as S3 (yarl
    would leave the bytes quoted, making it a key that is never found)."""
    try:
        unquote_to_bytes(request.raw_path.partition("?")[0]).decode()
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", "the request's path is not valid UTF-8") from None


async def _authorize(request: web.Request) -> web.StreamResponse:
    keys = request.app[KEYS]
    request[AUTH] = await asyncio.to_thread(
        verify, request.method, request.raw_path, request.headers, keys.secret, datetime.now(UTC)
    )
    return _GO_ON


@web.middleware
async def s3_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    _check_uri(request)
    if AUTH not in request:  # else checked already, before "100 Continue" (below)
        await _authorize(request)
    return await handler(request)


_GO_ON = web.Response()  # _authorize's answer: nothing to say, go on


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` (botocore's PutObject and UploadPart send it): the signature
    is checked before the client is told to send its body, so a refused request is answered
    without the body ever being sent, as S3 does. aiohttp's own handler says continue at
    once, before any middleware has run."""
    answer = await s3_errors(request, _authorize)
    if answer is not _GO_ON:
        return answer  # the S3 error, and aiohttp closes the connection on the unread body
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        return _error_response(request, S3Error("InvalidRequest", "Expect is 100-continue"))
    if request.version == HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's own size is counted from here, as aiohttp
    return None


_CUSTOMER_KEY = ("x-amz-server-side-encryption-customer-algorithm",
                 "x-amz-copy-source-server-side-encryption-customer-algorithm")  # fmt: skip


@web.middleware
async def s3_encryption(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every object is sealed by the validator with AES-256-GCM, what S3 calls SSE-S3: asked
    for, it is given and said so. A customer key (SSE-C) or KMS cannot be honoured, and
    storing anyway would let the client believe its key protects the data: refused."""
    if any(name in request.headers for name in _CUSTOMER_KEY):
        raise S3Error("NotImplemented", "SSE-C (customer-provided keys) is not supported")
    asked = request.headers.get("x-amz-server-side-encryption")
    if asked is not None and asked != "AES256":
        raise S3Error("NotImplemented", f"server-side encryption {asked[:32]!r} is not supported")
    response = await handler(request)
    if "key" in request.match_info and response.status < 300 and not response.prepared:
        response.headers["x-amz-server-side-encryption"] = "AES256"  # GET: _object_headers
    return response


def _owner(request: web.Request) -> int:
    return request[AUTH].user_id


def _bucket(request: web.Request) -> str:
    return request.match_info["bucket"]


def _key(request: web.Request) -> str:
    key = request.match_info["key"]
    check_key(key)
    return key


def _int(request: web.Request, name: str, default: int, top: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise S3Error("InvalidArgument", f"{name} must be a whole number")
    return min(int(raw), top)


def _from_token(token: str) -> str:
    """The name a continuation token stands for (base64url of it); anything else is a 400."""
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise S3Error("InvalidArgument", "the continuation token is not valid") from None


def _xml(root: str, body: list[str], status: int = 200) -> web.Response:
    return web.Response(
        body=xml.document(root, body), status=status, content_type="application/xml"
    )


def _http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


def _user_metadata(request: web.Request) -> dict[str, str]:
    return {
        name.lower().removeprefix("x-amz-meta-"): value
        for name, value in request.headers.items()
        if name.lower().startswith("x-amz-meta-")
    }


# Headers S3 keeps with an object and serves back on GET and HEAD.
STORED_HEADERS = ("Content-Encoding", "Content-Disposition", "Content-Language",
                  "Cache-Control", "Expires")  # fmt: skip


def _stored_headers(request: web.Request) -> dict[str, str]:
    headers = {name: request.headers[name] for name in STORED_HEADERS if name in request.headers}
    # aws-chunked is how this request's body was framed, not how the object is encoded.
    codings = [c.strip() for c in headers.pop("Content-Encoding", "").split(",")]
    if kept := [c for c in codings if c and c.lower() != "aws-chunked"]:
        headers["Content-Encoding"] = ", ".join(kept)
    return headers


def _new_meta(request: web.Request, key: str) -> ObjectMeta:
    return ObjectMeta(
        key=key,
        size=0,
        etag="",
        content_type=request.headers.get("Content-Type") or DEFAULT_TYPE,
        metadata=_user_metadata(request),
        checksum=None,
        modified_at=datetime.now(UTC),
        headers=_stored_headers(request),
    )


async def _small_body(request: web.Request) -> bytes:
    """A bounded request body (XML), read through the same checks as objects."""
    reader = BodyReader(request.content, request.headers, request[AUTH], MAX_XML)
    pieces = [piece async for piece in reader.chunks()]
    reader.check()
    return b"".join(pieces)


# --- buckets ---------------------------------------------------------------------------


async def list_buckets(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    query = request.query
    prefix = query.get("prefix", "")
    limit = _int(request, "max-buckets", MAX_BUCKETS, MAX_BUCKETS)
    if limit < 1:
        raise S3Error("InvalidArgument", f"max-buckets is 1..{MAX_BUCKETS}")
    token = query.get("continuation-token")
    after = "" if token is None else _from_token(token)
    buckets, truncated = await asyncio.to_thread(
        service.list_buckets, _owner(request), prefix=prefix, after=after, limit=limit
    )
    owner = element("ID", request[AUTH].access_key) + element(
        "DisplayName", request[AUTH].access_key
    )
    entries = "".join(
        f"<Bucket>{element('Name', name)}{element('CreationDate', xml.timestamp(at))}</Bucket>"
        for name, at in buckets
    )
    body = [f"<Owner>{owner}</Owner>", f"<Buckets>{entries}</Buckets>"]
    if truncated:  # the last name given, opaque to the client as S3's token is
        next_token = base64.urlsafe_b64encode(buckets[-1][0].encode()).decode()
        body.append(element("ContinuationToken", next_token))
    if "prefix" in query:
        body.append(element("Prefix", prefix))
    return _xml("ListAllMyBucketsResult", body)


async def put_bucket(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if request.query.keys() - {"x-id"}:
        raise S3Error("NotImplemented", "bucket configuration is not supported")
    await _small_body(request)  # CreateBucketConfiguration: one region here, ignored
    await asyncio.to_thread(service.create_bucket, _owner(request), _bucket(request))
    return web.Response(headers={"Location": f"/{_bucket(request)}"})


async def head_bucket(request: web.Request) -> web.Response:
    await asyncio.to_thread(request.app[SERVICE].head_bucket, _owner(request), _bucket(request))
    return web.Response()


async def delete_bucket(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    stored = await asyncio.to_thread(service.delete_bucket, _owner(request), _bucket(request))
    await service.delete_stored(_owner(request), stored)
    return web.Response(status=204)


async def get_bucket(request: web.Request) -> web.Response:
    query = request.query
    service = request.app[SERVICE]
    owner, bucket = _owner(request), _bucket(request)
    if "uploads" in query:
        return await _list_uploads(request)
    if "versions" in query:
        return await _list_versions(request)
    if "location" in query:
        await asyncio.to_thread(service.head_bucket, owner, bucket)
        return web.Response(
            body=f'{xml.HEAD}<LocationConstraint xmlns="{xml.NS}"></LocationConstraint>'.encode(),
            content_type="application/xml",
        )
    if "versioning" in query:
        await asyncio.to_thread(service.head_bucket, owner, bucket)
        return _xml("VersioningConfiguration", [])
    if "acl" in query:
        await asyncio.to_thread(service.head_bucket, owner, bucket)
        return _owner_only_acl(request)
    if query.keys() & {"policy", "cors", "lifecycle", "tagging", "website", "encryption"}:
        raise S3Error("NotImplemented", "bucket configuration is not supported")
    return await _list_objects(request, v2=query.get("list-type") == "2")


async def _list_objects(  # noqa: PLR0912 - V1 and V2 share all but their markers
    request: web.Request, *, v2: bool
) -> web.Response:
    query = request.query
    service = request.app[SERVICE]
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    max_keys = _int(request, "max-keys", 1000, 1000)
    url = query.get("encoding-type") == "url"
    if url and query.get("encoding-type") != "url":
        raise S3Error("InvalidArgument", "encoding-type is url")

    def enc(text: str) -> str:
        return quote(text, safe="/") if url else text

    if v2:
        token = query.get("continuation-token")
        start_after = query.get("start-after", "")
        after = start_after
        if token is not None:
            after = _from_token(token)
    else:
        after = query.get("marker", "")
    listing = await asyncio.to_thread(
        service.list_objects,
        _owner(request),
        _bucket(request),
        prefix=prefix,
        delimiter=delimiter,
        after=after,
        max_keys=max_keys,
    )
    body = [
        element("Name", _bucket(request)),
        # V1's Prefix is given back as sent (boto3 decodes V2's only, and AWS agrees).
        element("Prefix", enc(prefix) if v2 else prefix),
        element("MaxKeys", max_keys),
        element("IsTruncated", "true" if listing.truncated else "false"),
    ]
    if delimiter:
        body.append(element("Delimiter", enc(delimiter)))
    if url:
        body.append(element("EncodingType", "url"))
    if v2:
        body.append(element("KeyCount", len(listing.objects) + len(listing.prefixes)))
        if "continuation-token" in query:
            body.append(element("ContinuationToken", query["continuation-token"]))
        if "start-after" in query:
            body.append(element("StartAfter", enc(query["start-after"])))
        if listing.truncated and listing.next_marker is not None:
            token = base64.urlsafe_b64encode(listing.next_marker.encode()).decode()
            body.append(element("NextContinuationToken", token))
    else:
        body.append(element("Marker", enc(after)))
        if listing.truncated and listing.next_marker is not None:
            body.append(element("NextMarker", enc(listing.next_marker)))
    owner = ""  # V1 always names the owner, V2 when asked (fetch-owner), as S3
    if not v2 or query.get("fetch-owner", "").lower() == "true":
        access_key = request[AUTH].access_key
        owner = f"<Owner>{element('ID', access_key)}{element('DisplayName', access_key)}</Owner>"
    for obj in listing.objects:
        body.append(
            "<Contents>"
            + element("Key", enc(obj.key))
            + element("LastModified", xml.timestamp(obj.modified_at))
            + element("ETag", obj.etag)
            + element("Size", obj.size)
            + element("StorageClass", "STANDARD")
            + owner
            + "</Contents>"
        )
    body.extend(
        f"<CommonPrefixes>{element('Prefix', enc(p))}</CommonPrefixes>" for p in listing.prefixes
    )
    return _xml("ListBucketResult", body)


async def _list_versions(request: web.Request) -> web.Response:
    """ListObjectVersions of a bucket without versioning, as S3 answers it: each object is
    its one version, ``null`` and latest (what cleanup tools such as s3-tests' list)."""
    query = request.query
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    max_keys = _int(request, "max-keys", 1000, 1000)
    listing = await asyncio.to_thread(
        request.app[SERVICE].list_objects,
        _owner(request),
        _bucket(request),
        prefix=prefix,
        delimiter=delimiter,
        after=query.get("key-marker", ""),
        max_keys=max_keys,
    )
    owner = element("ID", request[AUTH].access_key)
    body = [
        element("Name", _bucket(request)),
        element("Prefix", prefix),
        element("KeyMarker", query.get("key-marker", "")),
        element("VersionIdMarker", query.get("version-id-marker", "")),
        element("MaxKeys", max_keys),
        element("IsTruncated", "true" if listing.truncated else "false"),
    ]
    if delimiter:
        body.append(element("Delimiter", delimiter))
    if listing.truncated and listing.next_marker is not None:
        body += [
            element("NextKeyMarker", listing.next_marker),
            element("NextVersionIdMarker", "null"),
        ]
    body.extend(
        "<Version>"
        + element("Key", obj.key)
        + element("VersionId", "null")
        + element("IsLatest", "true")
        + element("LastModified", xml.timestamp(obj.modified_at))
        + element("ETag", obj.etag)
        + element("Size", obj.size)
        + element("StorageClass", "STANDARD")
        + f"<Owner>{owner}</Owner>"
        + "</Version>"
        for obj in listing.objects
    )
    body.extend(
        f"<CommonPrefixes>{element('Prefix', p)}</CommonPrefixes>" for p in listing.prefixes
    )
    return _xml("ListVersionsResult", body)


async def _list_uploads(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    query = request.query
    prefix = query.get("prefix", "")
    key_marker = query.get("key-marker", "")
    # S3 reads upload-id-marker only beside a key-marker.
    id_marker = query.get("upload-id-marker", "") if key_marker else ""
    max_uploads = _int(request, "max-uploads", MAX_UPLOADS, MAX_UPLOADS)
    if max_uploads < 1:
        raise S3Error("InvalidArgument", f"max-uploads is 1..{MAX_UPLOADS}")
    url = query.get("encoding-type") == "url"

    def enc(text: str) -> str:
        return quote(text, safe="/") if url else text

    uploads, truncated = await asyncio.to_thread(
        service.list_uploads,
        _owner(request),
        _bucket(request),
        prefix=prefix,
        key_marker=key_marker,
        upload_id_marker=id_marker,
        max_uploads=max_uploads,
    )
    body = [
        element("Bucket", _bucket(request)),
        element("KeyMarker", enc(key_marker)),
        element("UploadIdMarker", id_marker),
        element("Prefix", enc(prefix)),
        element("MaxUploads", max_uploads),
        element("IsTruncated", "true" if truncated else "false"),
    ]
    if truncated:
        body.append(element("NextKeyMarker", enc(uploads[-1].key)))
        body.append(element("NextUploadIdMarker", uploads[-1].upload_id))
    if url:
        body.append(element("EncodingType", "url"))
    body.extend(
        "<Upload>"
        + element("Key", enc(u.key))
        + element("UploadId", u.upload_id)
        + element("Initiated", xml.timestamp(u.created_at))
        + element("StorageClass", "STANDARD")
        + "</Upload>"
        for u in uploads
    )
    return _xml("ListMultipartUploadsResult", body)


async def post_bucket(request: web.Request) -> web.Response:
    if "delete" not in request.query:
        raise S3Error("NotImplemented", "of POST on a bucket, only ?delete is supported")
    service = request.app[SERVICE]
    owner, bucket = _owner(request), _bucket(request)
    await asyncio.to_thread(service.head_bucket, owner, bucket)
    keys, quiet = xml.parse_delete(await _small_body(request))
    body = []
    for key in keys:
        try:
            check_key(key)
            stored = await asyncio.to_thread(service.unlink, owner, bucket, key)
        except S3Error as exc:
            body.append(
                f"<Error>{element('Key', key)}{element('Code', exc.code)}"
                f"{element('Message', exc.message)}</Error>"
            )
            continue
        await service.delete_stored(owner, stored)
        if not quiet:
            body.append(f"<Deleted>{element('Key', key)}</Deleted>")
    return _xml("DeleteResult", body)


# --- objects ---------------------------------------------------------------------------


async def put_object(request: web.Request) -> web.Response:
    query = request.query
    if "uploadId" in query or "partNumber" in query:
        return await _upload_part(request)
    if "x-amz-copy-source" in request.headers:
        return await _copy_object(request)
    if query.keys() - {"x-id"}:
        raise S3Error("NotImplemented", "object configuration (acl, tagging...) is not supported")
    service = request.app[SERVICE]
    owner, bucket, key = _owner(request), _bucket(request), _key(request)
    await asyncio.to_thread(service.head_bucket, owner, bucket)
    reader = BodyReader(request.content, request.headers, request[AUTH], service.max_part)
    fresh = _new_meta(request, key)

    def link(session: Session, stored: str) -> list[str]:  # once the whole body is read
        meta = ObjectMeta(
            key, reader.size, reader.etag, fresh.content_type, fresh.metadata,
            reader.checksum_value, datetime.now(UTC), headers=fresh.headers,
        )  # fmt: skip
        return service.link(session, owner, bucket, key, meta, [(stored, reader.size, reader.etag)])

    replaced = await service.store_part(owner, reader.chunks(), reader.check, reader.declared, link)
    await service.delete_stored(owner, replaced)
    return web.Response(headers={"ETag": reader.etag, **_checksum_header(reader.checksum_value)})


def _copy_source(request: web.Request) -> tuple[str, str]:
    source = unquote(request.headers["x-amz-copy-source"]).partition("?")[0].lstrip("/")
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "x-amz-copy-source is /bucket/key")
    check_bucket_name(bucket)
    check_key(key)
    return bucket, key


async def _hashed(source: AsyncIterator[memoryview], md5: hashlib._Hash) -> AsyncIterator[bytes]:
    async for chunk in source:
        data = bytes(chunk)
        await asyncio.to_thread(md5.update, data)
        yield data


async def _copy_object(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    owner, bucket, key = _owner(request), _bucket(request), _key(request)
    src_bucket, src_key = _copy_source(request)
    await asyncio.to_thread(service.head_bucket, owner, bucket)
    source = await asyncio.to_thread(service.head, owner, src_bucket, src_key)
    _check_preconditions(request, source, prefix="x-amz-copy-source-")
    replace = request.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
    if (src_bucket, src_key) == (bucket, key) and not replace:
        raise S3Error(
            "InvalidRequest",
            "this copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata",
        )
    md5 = hashlib.md5()  # noqa: S324 - S3's ETag
    fresh = _new_meta(request, key)
    copied: list[ObjectMeta] = []

    def link(session: Session, stored: str) -> list[str]:  # once every byte is copied
        meta = ObjectMeta(
            key,
            source.size,
            f'"{md5.hexdigest()}"',
            fresh.content_type if replace else source.content_type,
            fresh.metadata if replace else source.metadata,
            source.checksum,
            datetime.now(UTC),
            headers=fresh.headers if replace else source.headers,
        )
        copied.append(meta)
        return service.link(session, owner, bucket, key, meta, [(stored, meta.size, meta.etag)])

    body = _hashed(service.read(owner, source, 0, source.size), md5)
    replaced = await service.store_part(owner, body, lambda: None, source.size, link)
    await service.delete_stored(owner, replaced)
    meta = copied[0]
    return _xml(
        "CopyObjectResult",
        [element("LastModified", xml.timestamp(meta.modified_at)), element("ETag", meta.etag)],
    )


def _check_preconditions(request: web.Request, meta: ObjectMeta, prefix: str = "") -> bool:
    """False when the client's copy is current (304); raises 412 on a failed condition."""
    headers = request.headers
    etag = meta.etag.strip('"')
    match = headers.get(f"{prefix}If-Match")
    if (
        match is not None
        and etag not in {t.strip().strip('"') for t in match.split(",")}
        and match.strip() != "*"
    ):
        raise S3Error("PreconditionFailed", "at least one of the preconditions did not hold")
    since = _date(headers.get(f"{prefix}If-Unmodified-Since"))
    if match is None and since is not None and meta.modified_at.replace(microsecond=0) > since:
        raise S3Error("PreconditionFailed", "at least one of the preconditions did not hold")
    none_match = headers.get(f"{prefix}If-None-Match")
    if none_match is not None:
        tags = {t.strip().strip('"') for t in none_match.split(",")}
        if etag in tags or none_match.strip() == "*":
            if prefix:
                raise S3Error(
                    "PreconditionFailed", "at least one of the preconditions did not hold"
                )
            return False
    modified = _date(headers.get(f"{prefix}If-Modified-Since"))
    if (
        none_match is None
        and modified is not None
        and (meta.modified_at.replace(microsecond=0) <= modified)
    ):
        if prefix:
            raise S3Error("PreconditionFailed", "at least one of the preconditions did not hold")
        return False
    return True


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # S3 ignores a condition it cannot parse


def _checksum_header(checksum: str | None) -> dict[str, str]:
    """``x-amz-checksum-<algorithm>`` of a stored "algorithm:value", and its type: a
    multipart object's is COMPOSITE (the value ends in "-N"), a single PUT's FULL_OBJECT."""
    if checksum is None:
        return {}
    algorithm, _, value = checksum.partition(":")
    kind = "COMPOSITE" if "-" in value else "FULL_OBJECT"
    return {f"x-amz-checksum-{algorithm}": value, "x-amz-checksum-type": kind}


def _object_headers(request: web.Request, meta: ObjectMeta) -> dict[str, str]:
    headers = {
        "ETag": meta.etag,
        "Last-Modified": _http_date(meta.modified_at),
        "Content-Type": meta.content_type,
        "Accept-Ranges": "bytes",
        "x-amz-server-side-encryption": "AES256",  # see s3_encryption
    }
    headers.update(meta.headers)
    for name, value in meta.metadata.items():
        headers[f"x-amz-meta-{name}"] = value
    if request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        headers.update(_checksum_header(meta.checksum))
    if "-" in meta.etag:
        headers["x-amz-mp-parts-count"] = str(len(meta.parts))
    for name, header in _RESPONSE_OVERRIDES.items():  # what a presigned URL asks to be served
        if name in request.query:
            headers[header] = request.query[name]
    return headers


_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
    "response-content-language": "Content-Language",
    "response-cache-control": "Cache-Control",
    "response-expires": "Expires",
}


def _span(request: web.Request, meta: ObjectMeta) -> tuple[int, int] | None:
    """The bytes asked for: one part (``partNumber``, as the object was uploaded), a Range,
    or the whole object (None)."""
    if "partNumber" not in request.query:
        return _range(request, meta.size)
    number = _int(request, "partNumber", 0, MAX_PARTS + 1)
    if not 1 <= number <= MAX_PARTS:
        raise S3Error("InvalidArgument", f"partNumber is 1..{MAX_PARTS}")
    sizes = [part.size for part in meta.parts] if "-" in meta.etag else [meta.size]
    if number > len(sizes):
        raise S3Error("InvalidPart", f"the object has {len(sizes)} part(s), not {number}")
    if len(sizes) == 1 and "-" not in meta.etag:
        return None  # a single PUT is its one part: the whole object, as S3
    start = sum(sizes[: number - 1])
    return start, start + sizes[number - 1]


def _range(request: web.Request, size: int) -> tuple[int, int] | None:
    header = request.headers.get("Range")
    if not header:
        return None
    try:
        wanted = request.http_range
    except ValueError:
        return None  # S3 serves the whole object for a range it cannot parse
    start, stop = wanted.start, wanted.stop
    if start is not None and start < 0 and stop is None:
        if size == 0:
            return None
        return max(0, size + start), size
    start = 0 if start is None else start
    stop = size if stop is None else min(stop, size)
    if start >= size or stop <= start:
        raise S3Error("InvalidRange", "the requested range is not satisfiable")
    return start, stop


async def head_object(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    meta = await asyncio.to_thread(service.head, _owner(request), _bucket(request), _key(request))
    headers = _object_headers(request, meta)
    if not _check_preconditions(request, meta):
        return web.Response(status=304, headers={"ETag": meta.etag})
    span = _span(request, meta)
    if span is None:
        headers["Content-Length"] = str(meta.size)
        return web.Response(headers=headers)
    headers["Content-Length"] = str(span[1] - span[0])
    headers["Content-Range"] = f"bytes {span[0]}-{span[1] - 1}/{meta.size}"
    return web.Response(status=206, headers=headers)


# Object subresources we do not keep: a request for one must not be taken for the object.
_OBJECT_SUBRESOURCES = frozenset({"tagging", "retention", "legal-hold", "torrent", "attributes",
                                  "restore", "select"})  # fmt: skip


def _owner_only_acl(request: web.Request) -> web.Response:
    """GetBucketAcl/GetObjectAcl: only the owner's key ever reaches a bucket, so its ACL is
    the owner's FULL_CONTROL and nothing else (PutBucketAcl and PutObjectAcl are 501)."""
    access_key = request[AUTH].access_key
    who = element("ID", access_key) + element("DisplayName", access_key)
    grantee = (
        '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:type="CanonicalUser">{who}</Grantee>'
    )
    grant = f"<Grant>{grantee}{element('Permission', 'FULL_CONTROL')}</Grant>"
    return _xml(
        "AccessControlPolicy",
        [f"<Owner>{who}</Owner>", f"<AccessControlList>{grant}</AccessControlList>"],
    )


async def get_object(request: web.Request) -> web.StreamResponse:
    if "uploadId" in request.query:
        return await _list_parts(request)
    if request.query.keys() & _OBJECT_SUBRESOURCES:
        raise S3Error("NotImplemented", "object configuration (tagging...) is not supported")
    service = request.app[SERVICE]
    if "acl" in request.query:
        await asyncio.to_thread(service.head, _owner(request), _bucket(request), _key(request))
        return _owner_only_acl(request)
    meta = await asyncio.to_thread(service.head, _owner(request), _bucket(request), _key(request))
    if not _check_preconditions(request, meta):
        return web.Response(status=304, headers={"ETag": meta.etag})
    headers = _object_headers(request, meta)
    span = _span(request, meta)
    status = 200
    start, stop = 0, meta.size
    if span is not None:
        start, stop = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{meta.size}"
        for name in [h for h in headers if h.startswith("x-amz-checksum-")]:
            del headers[name]  # the whole object's, not the range's
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = stop - start
    if stop == start:
        await response.prepare(request)
        await response.write_eof()
        return response
    chunks = service.read(_owner(request), meta, start, stop, reuse_buffers=True)
    return await send_stream(request, response, chunks, service.settings, {"key": meta.key})


async def delete_object(request: web.Request) -> web.Response:
    if request.query.keys() - {"uploadId", "x-id"}:  # DeleteObjectTagging must not delete it
        raise S3Error("NotImplemented", "object configuration (tagging...) is not supported")
    service = request.app[SERVICE]
    owner, bucket, key = _owner(request), _bucket(request), _key(request)
    if "uploadId" in request.query:
        stored = await asyncio.to_thread(
            service.abort, owner, bucket, key, request.query["uploadId"]
        )
    else:
        stored = await asyncio.to_thread(service.unlink, owner, bucket, key)
    await service.delete_stored(owner, stored)
    return web.Response(status=204)


# --- multipart -------------------------------------------------------------------------


async def post_object(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    owner, bucket, key = _owner(request), _bucket(request), _key(request)
    if "uploads" in request.query:
        upload_id = await asyncio.to_thread(
            service.create_upload, owner, bucket, key, _new_meta(request, key)
        )
        return _xml(
            "InitiateMultipartUploadResult",
            [element("Bucket", bucket), element("Key", key), element("UploadId", upload_id)],
        )
    if "uploadId" in request.query:
        upload_id = request.query["uploadId"]
        done = await asyncio.to_thread(service.completed, owner, bucket, key, upload_id)
        if done is None:
            await asyncio.to_thread(service.check_upload, owner, bucket, key, upload_id)
            chosen = xml.parse_complete(await _small_body(request))
            etag, checksum, unused = await asyncio.to_thread(
                service.complete, owner, bucket, key, upload_id, chosen
            )
            await service.delete_stored(owner, unused)
            done = etag, checksum
        etag, checksum = done
        body = [
            element("Location", f"/{bucket}/{quote(key)}"),
            element("Bucket", bucket),
            element("Key", key),
            element("ETag", etag),
        ]
        if checksum is not None:
            algorithm, _, value = checksum.partition(":")
            body.append(element(f"Checksum{algorithm.upper()}", value))
            body.append(element("ChecksumType", "COMPOSITE"))
        return _xml("CompleteMultipartUploadResult", body)
    raise S3Error("NotImplemented", "of POST on an object, only ?uploads and ?uploadId=")


async def _upload_part(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    owner, bucket, key = _owner(request), _bucket(request), _key(request)
    upload_id = request.query.get("uploadId", "")
    number = _int(request, "partNumber", 0, MAX_PARTS + 1)
    if not 1 <= number <= MAX_PARTS:
        raise S3Error("InvalidArgument", f"partNumber is 1..{MAX_PARTS}")
    if "x-amz-copy-source" in request.headers:
        raise S3Error("NotImplemented", "UploadPartCopy is not supported")
    await asyncio.to_thread(service.check_upload, owner, bucket, key, upload_id)
    reader = BodyReader(request.content, request.headers, request[AUTH], service.max_part)

    def add(session: Session, stored: str) -> list[str]:  # once the whole body is read
        part = (stored, reader.size, reader.etag)
        return service.add_part(
            session, owner, bucket, key, upload_id, number, part, reader.checksum_value
        )

    replaced = await service.store_part(owner, reader.chunks(), reader.check, reader.declared, add)
    await service.delete_stored(owner, replaced)
    return web.Response(headers={"ETag": reader.etag, **_checksum_header(reader.checksum_value)})


async def _list_parts(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    owner, bucket, key = _owner(request), _bucket(request), _key(request)
    upload_id = request.query["uploadId"]
    after = _int(request, "part-number-marker", 0, MAX_PARTS)
    max_parts = _int(request, "max-parts", 1000, 1000)
    parts, truncated = await asyncio.to_thread(
        service.list_parts, owner, bucket, key, upload_id, after, max_parts
    )
    body = [
        element("Bucket", bucket),
        element("Key", key),
        element("UploadId", upload_id),
        element("PartNumberMarker", after),
        element("MaxParts", max_parts),
        element("IsTruncated", "true" if truncated else "false"),
    ]
    if truncated and parts:
        body.append(element("NextPartNumberMarker", parts[-1].number))
    body.extend(
        "<Part>"
        + element("PartNumber", p.number)
        + element("LastModified", xml.timestamp(p.modified_at))
        + element("ETag", p.etag)
        + element("Size", p.size)
        + "</Part>"
        for p in parts
    )
    return _xml("ListPartsResult", body)


# --- the app ---------------------------------------------------------------------------


async def _sweep_orphans(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE]
    try:
        orphans = await asyncio.to_thread(service.orphans)
        for owner, object_id in orphans:
            await service.delete_stored(owner, [object_id])
        if orphans:
            log.warning("deleted S3 parts never linked", extra={"count": len(orphans)})
    except DBAPIError:
        log.exception("could not look for unlinked S3 parts")
    yield


def make_s3_app(gateway: Gateway, settings: ValidatorSettings, keys: AccessKeys) -> web.Application:
    app = web.Application(middlewares=[s3_errors, s3_auth, s3_encryption])
    app[SERVICE] = S3Service(gateway, settings)
    app[KEYS] = keys
    app.router.add_get("/", list_buckets)
    for path in ("/{bucket}", "/{bucket}/"):
        app.router.add_put(path, put_bucket, expect_handler=expect_continue)
        app.router.add_get(path, get_bucket, allow_head=False)
        app.router.add_head(path, head_bucket)
        app.router.add_delete(path, delete_bucket)
        app.router.add_post(path, post_bucket, expect_handler=expect_continue)
    obj = "/{bucket}/{key:.+}"
    app.router.add_put(obj, put_object, expect_handler=expect_continue)
    app.router.add_get(obj, get_object, allow_head=False)
    app.router.add_head(obj, head_object)
    app.router.add_delete(obj, delete_object)
    app.router.add_post(obj, post_object, expect_handler=expect_continue)
    app.cleanup_ctx.append(_sweep_orphans)
    return app


def s3_server(
    gateway: Gateway, settings: ValidatorSettings
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context for the validator's app: serves the S3 API on ``s3_port`` while
    the validator runs (same process, same gateway), TLS if a certificate is set."""

    async def serve(_app: web.Application) -> AsyncIterator[None]:
        keys = AccessKeys(gateway.sessions, Path(settings.data_dir) / KEY_FILE)
        # auto_decompress off: a body sent with Content-Encoding: gzip is the object's bytes,
        # stored as sent (S3 keeps the encoding as metadata); aiohttp would inflate it.
        runner = web.AppRunner(
            make_s3_app(gateway, settings, keys), access_log=None, auto_decompress=False
        )
        await runner.setup()
        context = None
        if settings.s3_tls_cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings.s3_tls_cert, settings.s3_tls_key or None)
        assert settings.s3_port is not None  # only added when set
        site = web.TCPSite(runner, settings.host, settings.s3_port, ssl_context=context)
        await site.start()
        log.info("S3 API listening", extra={"port": settings.s3_port, "tls": context is not None})
        yield
        with contextlib.suppress(Exception):
            await runner.cleanup()

    return serve
