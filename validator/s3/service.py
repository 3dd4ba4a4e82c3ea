"""S3's buckets, objects and multipart uploads over the gateway, without HTTP.

An S3 object is a list of **parts**, each one object of the gateway (``objects``, named
``s3:<uuid>`` for its owner): a single PUT is one part; a multipart upload's parts are stored
as they arrive, each streamed into the erasure pipeline, and CompleteMultipartUpload only
links them (no byte is copied). Every object is sealed by the validator, which keeps its key
(an S3 client cannot seal). A PUT over an existing key stores the new object first, then
swaps the rows in one transaction and deletes the old parts: readers see the old object or
the new one, never a mix. Only the owner's buckets are ever looked at, so a user never sees
another user's buckets or objects (names are per user).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from erasure import ErasureParams
from validator.gateway import Gateway
from validator.models import S3_KEY, S3Bucket, S3Object, S3Part, S3Upload, StoredObject
from validator.s3.body import new_checksum
from validator.s3.errors import S3Error
from validator.settings import ValidatorSettings
from validator.uploads import UploadOptions

log = logging.getLogger(__name__)

NAME_PREFIX = "s3:"  # gateway object names of S3 parts
MAX_PARTS = 10_000
MIN_PART = 5 * 2**20  # every part but the last, as S3
MAX_PART = 5 * 2**30  # one PUT or one part, as S3
MAX_BUCKETS = 10_000  # ListBuckets' largest page, as S3
MAX_UPLOADS = 1000  # ListMultipartUploads' largest page, as S3
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class PartRef:
    stored_id: str
    size: int


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    key: str
    size: int
    etag: str
    content_type: str
    metadata: dict[str, str]
    checksum: str | None
    modified_at: datetime
    parts: tuple[PartRef, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)  # STORED_HEADERS given at the PUT


@dataclass(frozen=True, slots=True)
class Listing:
    objects: list[ObjectMeta]
    prefixes: list[str]
    truncated: bool
    next_marker: str | None  # the last key or prefix returned, when truncated


@dataclass(frozen=True, slots=True)
class PartInfo:
    number: int
    size: int
    etag: str
    modified_at: datetime


@dataclass(frozen=True, slots=True)
class UploadInfo:
    upload_id: str
    key: str
    created_at: datetime


def check_bucket_name(name: str) -> None:
    if not _BUCKET.match(name) or ".." in name:
        raise S3Error("InvalidBucketName", "the specified bucket is not valid", resource=name)


def check_key(key: str) -> None:
    if not key or len(key.encode()) > S3_KEY or "\x00" in key:
        raise S3Error("KeyTooLongError", f"keys are 1..{S3_KEY} bytes of UTF-8")


def multipart_etag(etags: list[str]) -> str:
    """S3's ETag of a multipart object: md5 of the parts' binary md5s, dash, part count."""
    joined = b"".join(bytes.fromhex(e.strip('"')) for e in etags)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(etags)}"'  # noqa: S324 - S3's ETag


# CRC64NVME is never composite in S3 (its multipart checksum is of the full object).
COMPOSITE = ("crc32", "crc32c", "sha1", "sha256")


def composite_checksum(parts: list[str | None]) -> str | None:
    """S3's checksum of a multipart object: the algorithm over the parts' binary checksums
    in order, then ``-N`` ("crc32:<base64>-3"). Only when every part has one, all of the
    same algorithm (else, as for parts sent without, the object has none)."""
    algorithms = {p.partition(":")[0] if p else None for p in parts}
    if len(algorithms) != 1 or (algorithm := algorithms.pop()) not in COMPOSITE:
        return None
    whole = new_checksum(algorithm)
    for part in parts:
        assert part is not None  # the algorithm of each is a COMPOSITE one
        whole.update(base64.b64decode(part.partition(":")[2]))
    return f"{algorithm}:{base64.b64encode(whole.digest()).decode()}-{len(parts)}"


def _now() -> datetime:
    return datetime.now(UTC)


def _meta(row: S3Object, parts: list[S3Part]) -> ObjectMeta:
    return ObjectMeta(
        key=row.key,
        size=row.size,
        etag=row.etag,
        content_type=row.content_type,
        metadata=json.loads(row.metadata_json),
        checksum=row.checksum,
        modified_at=row.modified_at.replace(tzinfo=UTC)
        if row.modified_at.tzinfo is None
        else row.modified_at,
        parts=tuple(PartRef(p.stored_id, p.size) for p in parts),
        headers=json.loads(row.headers_json),
    )


class S3Service:
    def __init__(self, gateway: Gateway, settings: ValidatorSettings) -> None:
        self.gateway = gateway
        self.sessions = gateway.sessions
        self.settings = settings
        self.max_part = min(MAX_PART, settings.max_object_size)

    # --- buckets (blocking: call in a thread) -------------------------------------------

    def _bucket(self, session: Session, owner: int, name: str) -> S3Bucket:
        row = session.scalar(
            select(S3Bucket).where(S3Bucket.owner_id == owner, S3Bucket.name == name)
        )
        if row is None:
            raise S3Error("NoSuchBucket", "the specified bucket does not exist", resource=name)
        return row

    def list_buckets(
        self, owner: int, *, prefix: str = "", after: str = "", limit: int = MAX_BUCKETS
    ) -> tuple[list[tuple[str, datetime]], bool]:
        """The owner's buckets by name after ``after``, at most ``limit``; and whether more
        are left (ListBuckets pages since 2024: max-buckets, continuation-token)."""
        with self.sessions() as session:
            query = select(S3Bucket).where(S3Bucket.owner_id == owner, S3Bucket.name > after)
            if prefix:
                query = query.where(S3Bucket.name.startswith(prefix, autoescape=True))
            rows = session.scalars(query.order_by(S3Bucket.name).limit(limit + 1)).all()
            return [(b.name, b.created_at) for b in rows[:limit]], len(rows) > limit

    def create_bucket(self, owner: int, name: str) -> None:
        check_bucket_name(name)
        try:
            with self.sessions.begin() as session:
                session.add(S3Bucket(owner_id=owner, name=name, created_at=_now()))
        except IntegrityError:
            raise S3Error(
                "BucketAlreadyOwnedByYou", "you already own this bucket", resource=name
            ) from None

    def head_bucket(self, owner: int, name: str) -> None:
        with self.sessions() as session:
            self._bucket(session, owner, name)

    def delete_bucket(self, owner: int, name: str) -> list[str]:
        """Empty buckets only. Returns the stored parts of aborted uploads, to delete."""
        with self.sessions.begin() as session:
            bucket = self._bucket(session, owner, name)
            if session.scalar(select(S3Object.id).where(S3Object.bucket_id == bucket.id).limit(1)):
                raise S3Error(
                    "BucketNotEmpty", "the bucket you tried to delete is not empty", resource=name
                )
            stored = list(
                session.scalars(
                    select(S3Part.stored_id)
                    .join(S3Upload, S3Upload.id == S3Part.upload_id)
                    .where(S3Upload.bucket_id == bucket.id)
                )
            )
            session.delete(bucket)
            return stored

    # --- objects ---------------------------------------------------------------------

    def head(self, owner: int, bucket: str, key: str) -> ObjectMeta:
        with self.sessions() as session:
            b = self._bucket(session, owner, bucket)
            row = session.scalar(
                select(S3Object).where(S3Object.bucket_id == b.id, S3Object.key == key)
            )
            if row is None:
                raise S3Error("NoSuchKey", "the specified key does not exist", resource=key)
            parts = list(
                session.scalars(
                    select(S3Part).where(S3Part.s3_object_id == row.id).order_by(S3Part.number)
                )
            )
            return _meta(row, parts)

    def _options(self, size: int | None) -> UploadOptions:
        s = self.settings
        params = ErasureParams(
            k=s.k, m=s.m, segment_size=s.segment_size, leaf_size=s.leaf_size, codec=s.codec
        )
        # Sealed by the validator, which keeps the key: an S3 client cannot seal.
        return UploadOptions(
            params,
            extra_receipts=s.extra_receipts,
            encrypt=True,
            keep_key=True,
            declared_size=size,
        )

    async def store_part(
        self,
        owner: int,
        body: AsyncIterator[bytes],
        before_commit: Callable[[], None],
        size: int | None,
        record: Callable[[Session, str], list[str]],
    ) -> list[str]:
        """Stream ``body`` (``size`` bytes, if known) into the pipeline as one gateway
        object. ``record(session, object_id)`` makes it part of S3's rows (``link``,
        ``add_part``) in the same transaction as its commit: an S3 part is visible exactly
        when it is stored, never stored unlinked. Returns what ``record`` replaced."""
        name = NAME_PREFIX + uuid.uuid4().hex
        replaced: list[str] = []

        def in_commit(session: Session, object_id: str) -> None:
            replaced.extend(record(session, object_id))

        await self.gateway.uploader.upload(
            owner, name, body, self._options(size), before_commit, in_commit
        )
        return replaced

    async def delete_stored(self, owner: int, stored: list[str]) -> None:
        for object_id in stored:
            try:
                await self.gateway.delete(owner, object_id)
            except Exception:  # best effort: the S3 rows are gone; log what is left
                log.exception("could not delete an S3 part's object", extra={"object": object_id})

    def link(
        self,
        session: Session,
        owner: int,
        bucket: str,
        key: str,
        meta: ObjectMeta,
        stored: list[tuple[str, int, str]],
    ) -> list[str]:
        """Make ``key`` the object made of ``stored`` (id, size, etag) parts, replacing any
        object there, in ``session``'s transaction; returns the replaced object's parts."""
        b = self._bucket(session, owner, bucket)
        return self._replace(session, b.id, key, meta, stored)

    def _replace(
        self,
        session: Session,
        bucket_id: int,
        key: str,
        meta: ObjectMeta,
        stored: list[tuple[str, int, str]],
    ) -> list[str]:
        old = session.scalar(
            select(S3Object).where(S3Object.bucket_id == bucket_id, S3Object.key == key)
        )
        replaced: list[str] = []
        if old is not None:
            replaced = list(
                session.scalars(select(S3Part.stored_id).where(S3Part.s3_object_id == old.id))
            )
            session.delete(old)
            session.flush()
        row = S3Object(
            bucket_id=bucket_id,
            key=key,
            size=meta.size,
            etag=meta.etag,
            content_type=meta.content_type,
            metadata_json=json.dumps(meta.metadata, sort_keys=True),
            headers_json=json.dumps(meta.headers, sort_keys=True),
            checksum=meta.checksum,
            modified_at=meta.modified_at,
        )
        session.add(row)
        session.flush()
        now = _now()
        for number, (stored_id, size, etag) in enumerate(stored, start=1):
            session.add(
                S3Part(
                    s3_object_id=row.id,
                    number=number,
                    stored_id=stored_id,
                    size=size,
                    etag=etag,
                    created_at=now,
                )
            )
        return replaced

    def unlink(self, owner: int, bucket: str, key: str) -> list[str]:
        """Remove ``key`` (absent is fine, as S3); returns its parts, to delete."""
        with self.sessions.begin() as session:
            b = self._bucket(session, owner, bucket)
            row = session.scalar(
                select(S3Object).where(S3Object.bucket_id == b.id, S3Object.key == key)
            )
            if row is None:
                return []
            stored = list(
                session.scalars(select(S3Part.stored_id).where(S3Part.s3_object_id == row.id))
            )
            session.delete(row)
            return stored

    async def read(
        self, reader: int, meta: ObjectMeta, start: int, stop: int, *,
        reuse_buffers: bool = False,
    ) -> AsyncGenerator[memoryview, None]:  # fmt: skip
        """Bytes ``start..stop`` of an object, part after part, for user ``reader`` (whose
        share of the downloads' byte budget its segments hold). ``reuse_buffers``: as
        :meth:`Downloader.stream`'s, only for a reader that sends each chunk before the next
        (a GET, not a copy, whose chunks wait in an upload's queue)."""
        base = 0
        for part in meta.parts:
            lo, hi = max(start - base, 0), min(stop - base, part.size)
            if lo < hi:
                plan = await asyncio.to_thread(self.gateway.downloader.plan, part.stored_id)
                chunks = self.gateway.downloader.stream(
                    plan, plan.stored_key, lo, hi, reader=reader, reuse_buffers=reuse_buffers
                )
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        yield chunk
            base += part.size
            if base >= stop:
                return

    def list_objects(
        self,
        owner: int,
        bucket: str,
        *,
        prefix: str,
        delimiter: str,
        after: str,
        max_keys: int,
    ) -> Listing:
        """Keys in UTF-8 binary order after ``after``, grouped by ``delimiter``. Truncated
        only if an entry is left to give (``max_keys`` 0 gives nothing, not truncated, as S3)."""
        if max_keys == 0:
            with self.sessions() as session:
                self._bucket(session, owner, bucket)
            return Listing([], [], False, None)
        objects: list[ObjectMeta] = []
        prefixes: list[str] = []
        cursor = after
        last: str | None = None
        with self.sessions() as session:
            b = self._bucket(session, owner, bucket)
            ordered = S3Object.key
            if session.get_bind().dialect.name == "postgresql":
                ordered = S3Object.key.collate("C")  # type: ignore[assignment]
            while True:
                query = select(S3Object).where(S3Object.bucket_id == b.id, ordered > cursor)
                if prefix:
                    query = query.where(S3Object.key.startswith(prefix, autoescape=True))
                rows = list(session.scalars(query.order_by(ordered).limit(1000)))
                if not rows:
                    return Listing(objects, prefixes, False, None)
                for row in rows:
                    cursor = row.key
                    rest = row.key[len(prefix) :]
                    common = None
                    if delimiter and delimiter in rest:
                        common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                        # Folded into the prefix just given, or a marker inside it (given
                        # on an earlier page): nothing new, so no reason to say "truncated".
                        if (prefixes and prefixes[-1] == common) or common <= after:
                            continue
                    if len(objects) + len(prefixes) >= max_keys:
                        return Listing(objects, prefixes, True, last)
                    if common is not None:
                        prefixes.append(common)
                        last = common
                    else:
                        objects.append(_meta(row, []))
                        last = row.key

    # --- multipart -------------------------------------------------------------------

    def create_upload(self, owner: int, bucket: str, key: str, meta: ObjectMeta) -> str:
        check_key(key)
        upload_id = uuid.uuid4().hex
        with self.sessions.begin() as session:
            b = self._bucket(session, owner, bucket)
            session.add(
                S3Upload(
                    id=upload_id,
                    bucket_id=b.id,
                    key=key,
                    content_type=meta.content_type,
                    metadata_json=json.dumps(meta.metadata, sort_keys=True),
                    headers_json=json.dumps(meta.headers, sort_keys=True),
                    created_at=_now(),
                )
            )
        return upload_id

    def _upload(
        self, session: Session, owner: int, bucket: str, key: str, upload_id: str
    ) -> S3Upload:
        b = self._bucket(session, owner, bucket)
        row = session.get(S3Upload, upload_id)
        if row is None or row.bucket_id != b.id or row.key != key:
            raise S3Error(
                "NoSuchUpload",
                "the specified multipart upload does not exist; it may have been aborted or "
                "completed",
                resource=upload_id,
            )
        return row

    def check_upload(self, owner: int, bucket: str, key: str, upload_id: str) -> None:
        with self.sessions() as session:
            self._upload(session, owner, bucket, key, upload_id)

    def add_part(
        self,
        session: Session,
        owner: int,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        part: tuple[str, int, str],
        checksum: str | None = None,
    ) -> list[str]:
        """Record a stored part (id, size, etag) and its checksum ("crc32:<base64>", if one
        was sent), in ``session``'s transaction; returns what it replaced (same number)."""
        stored_id, size, etag = part
        self._upload(session, owner, bucket, key, upload_id)
        old = session.scalar(
            select(S3Part).where(S3Part.upload_id == upload_id, S3Part.number == number)
        )
        replaced = []
        if old is not None:
            replaced.append(old.stored_id)
            session.delete(old)
            session.flush()
        session.add(
            S3Part(
                upload_id=upload_id,
                number=number,
                stored_id=stored_id,
                size=size,
                etag=etag,
                checksum=checksum,
                created_at=_now(),
            )
        )
        return replaced

    def complete(
        self, owner: int, bucket: str, key: str, upload_id: str, chosen: list[tuple[int, str]]
    ) -> tuple[str, str | None, list[str]]:
        """Link the chosen parts as the object; returns (etag, composite checksum if any,
        stored objects to delete)."""
        numbers = [n for n, _ in chosen]
        if numbers != sorted(numbers):
            raise S3Error(
                "InvalidPartOrder", "the list of parts was not in ascending order", resource=key
            )
        # A part named twice (a client that listed a re-sent part again): its last entry
        # counts, as S3 takes it.
        chosen = list({number: (number, etag) for number, etag in chosen}.values())
        with self.sessions.begin() as session:
            upload = self._upload(session, owner, bucket, key, upload_id)
            parts = {
                p.number: p
                for p in session.scalars(select(S3Part).where(S3Part.upload_id == upload_id))
            }
            picked = []
            for index, (number, etag) in enumerate(chosen):
                part = parts.get(number)
                if part is None or part.etag.strip('"') != etag.strip('"'):
                    raise S3Error(
                        "InvalidPart",
                        f"part {number} was not uploaded, or its ETag does not match",
                        resource=key,
                    )
                if part.size < MIN_PART and index < len(chosen) - 1:
                    raise S3Error(
                        "EntityTooSmall",
                        f"part {number} is {part.size} bytes; all but the last are >= {MIN_PART}",
                        resource=key,
                    )
                picked.append(part)
            etag = multipart_etag([p.etag for p in picked])
            meta = ObjectMeta(
                key=key,
                size=sum(p.size for p in picked),
                etag=etag,
                content_type=upload.content_type,
                metadata=json.loads(upload.metadata_json),
                checksum=composite_checksum([p.checksum for p in picked]),
                modified_at=_now(),
                headers=json.loads(upload.headers_json),
            )
            stored = [(p.stored_id, p.size, p.etag) for p in picked]
            unused = [p.stored_id for n, p in parts.items() if p not in picked]
            session.execute(delete(S3Part).where(S3Part.upload_id == upload_id))
            session.delete(upload)
            session.flush()
            replaced = self._replace(session, upload.bucket_id, key, meta, stored)
            row = session.scalar(
                select(S3Object).where(S3Object.bucket_id == upload.bucket_id, S3Object.key == key)
            )
            assert row is not None  # just written, in this transaction
            row.upload_id = upload_id  # a retried Complete is answered from it
            return etag, meta.checksum, unused + replaced

    def completed(
        self, owner: int, bucket: str, key: str, upload_id: str
    ) -> tuple[str, str | None] | None:
        """The ETag and checksum of the object this upload became, if it is still the key's
        object: a client retrying CompleteMultipartUpload (its first answer lost) gets them
        again, as S3 answers."""
        with self.sessions() as session:
            b = self._bucket(session, owner, bucket)
            row = session.execute(
                select(S3Object.etag, S3Object.checksum).where(
                    S3Object.bucket_id == b.id,
                    S3Object.key == key,
                    S3Object.upload_id == upload_id,
                )
            ).first()
            return None if row is None else (row.etag, row.checksum)

    def abort(self, owner: int, bucket: str, key: str, upload_id: str) -> list[str]:
        with self.sessions.begin() as session:
            upload = self._upload(session, owner, bucket, key, upload_id)
            stored = list(
                session.scalars(select(S3Part.stored_id).where(S3Part.upload_id == upload_id))
            )
            session.delete(upload)
            return stored

    def list_parts(
        self, owner: int, bucket: str, key: str, upload_id: str, after: int, max_parts: int
    ) -> tuple[list[PartInfo], bool]:
        with self.sessions() as session:
            self._upload(session, owner, bucket, key, upload_id)
            rows = session.scalars(
                select(S3Part)
                .where(S3Part.upload_id == upload_id, S3Part.number > after)
                .order_by(S3Part.number)
                .limit(max_parts + 1)
            ).all()
            infos = [PartInfo(p.number, p.size, p.etag, p.created_at) for p in rows]
            return infos[:max_parts], len(infos) > max_parts

    def list_uploads(
        self,
        owner: int,
        bucket: str,
        *,
        prefix: str,
        key_marker: str,
        upload_id_marker: str,
        max_uploads: int,
    ) -> tuple[list[UploadInfo], bool]:
        """Uploads in progress by key (UTF-8 binary order), then by when they began, after
        ``key_marker`` (and, within that key, after upload ``upload_id_marker``, as S3
        pages); and whether more are left."""
        with self.sessions() as session:
            b = self._bucket(session, owner, bucket)
            key = S3Upload.key
            if session.get_bind().dialect.name == "postgresql":
                key = S3Upload.key.collate("C")  # type: ignore[assignment]
            query = select(S3Upload).where(S3Upload.bucket_id == b.id)
            if prefix:
                query = query.where(S3Upload.key.startswith(prefix, autoescape=True))
            marker = session.get(S3Upload, upload_id_marker) if upload_id_marker else None
            if key_marker and marker is not None and marker.key == key_marker:
                query = query.where(
                    (key > key_marker)
                    | (
                        (key == key_marker)
                        & tuple_(S3Upload.created_at, S3Upload.id).__gt__(
                            tuple_(marker.created_at, marker.id)
                        )
                    )
                )
            elif key_marker:
                query = query.where(key > key_marker)
            order = query.order_by(key, S3Upload.created_at, S3Upload.id)
            rows = session.scalars(order.limit(max_uploads + 1)).all()
            infos = [UploadInfo(u.id, u.key, u.created_at) for u in rows]
            return infos[:max_uploads], len(infos) > max_uploads

    # --- housekeeping ----------------------------------------------------------------

    def orphans(self) -> list[tuple[int, str]]:
        """(owner, object) of committed S3 parts that no S3 row names: left by a validator
        that stopped between storing a part and linking it (versions before the link moved
        into the part's own commit). Run at start, when none is in flight."""
        with self.sessions() as session:
            rows = session.execute(
                select(StoredObject.owner_id, StoredObject.id).where(
                    StoredObject.name.startswith(NAME_PREFIX),
                    StoredObject.state == "committed",
                    StoredObject.id.not_in(select(S3Part.stored_id)),
                )
            ).all()
            return [(owner, object_id) for owner, object_id in rows]
