"""The validator's tables (SQLAlchemy 2.0 typed models; migrations in migrations/validator).

- ``users``: who may upload: a hotkey (Epistula) and/or an API token's hash, and a quota.
- ``miners``: every miner the validator places shards on, with its address, free space and
  reputation counters.
- ``objects``: one per uploaded object. ``state`` is ``pending`` while shards are pushed and
  ``committed`` once every segment has enough signed receipts; only committed objects are
  visible. ``(owner, name)`` is unique, so a retried upload cannot duplicate an object.
  ``sealed_by`` says who encrypted it: ``client`` objects are ciphertext the validator
  cannot read (their key never reaches it).
- ``segments`` and ``shards``: the manifest as rows (a shard id is its Merkle root).
- ``placements``: which miner holds which shard, with the miner's signed receipt.
- ``repair_queue``: shards that must be (re)placed: missing at upload, or lost later.
- ``challenge_log``: one signed, hash-chained row per challenge (see ``audit_log.py``).
- ``challenge_stats``: per miner per time bucket, the log's counts by verdict and a latency
  histogram, kept with the log (a derived index: see ``challenge_stats.py``).
- ``s3_*``: the S3 API's access keys, buckets, objects (each a list of parts, each part one
  stored object) and multipart uploads in progress (see ``validator/s3/``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from protocol.db import NAMING_CONVENTION

HOTKEY = 64
SHARD_ID = 64
MAX_NAME = 1024


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    hotkey: Mapped[str | None] = mapped_column(String(HOTKEY), unique=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)  # None: unlimited
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Miner(Base):
    __tablename__ = "miners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hotkey: Mapped[str] = mapped_column(String(HOTKEY), unique=True)
    uid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    capacity_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    free_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Beta reputation with forgetting (DESIGN §5), kept apart for wrong data and timeouts.
    wrong_alpha: Mapped[float] = mapped_column(Float, default=1.0)
    wrong_beta: Mapped[float] = mapped_column(Float, default=0.0)
    timeout_alpha: Mapped[float] = mapped_column(Float, default=1.0)
    timeout_beta: Mapped[float] = mapped_column(Float, default=0.0)
    # Reads served: retrievals and the shares users' downloads and repairs asked for.
    serving_alpha: Mapped[float] = mapped_column(Float, default=1.0)
    serving_beta: Mapped[float] = mapped_column(Float, default=0.0)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(default=True)
    # Bytes of stored placements whose latest challenge passed: a running total the
    # database's triggers on placements keep exact (validator/verified.py).
    verified_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Set when it left the metagraph (its shards go to repair); cleared if it comes back.
    deregistered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set once its wrong-answer score fell below the threshold; its weight stays 0.
    disqualified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set while its timeout or serving score is below the threshold (validator/scoring.py):
    # weight 0, nothing placed on it; cleared on recovery.
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Why: "serving" (online but its reads fail: its shares count as unhealthy) or
    # "timeouts" (offline: each of its shares follows its own challenges).
    suspended_for: Mapped[str | None] = mapped_column(String(16))


class StoredObject(Base):
    __tablename__ = "objects"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME))
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | committed
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    k: Mapped[int] = mapped_column(Integer)
    m: Mapped[int] = mapped_column(Integer)
    segment_size: Mapped[int] = mapped_column(Integer)
    leaf_size: Mapped[int] = mapped_column(Integer)
    encryption: Mapped[str] = mapped_column(String(32))
    # The erasure codec (erasure.codec.CODECS), as in the manifest; repair decodes with it.
    codec: Mapped[str] = mapped_column(String(16), default="zfec")
    manifest_json: Mapped[str | None] = mapped_column(Text)
    # A capability names its object by this (GET /v1/shared/{verifier}).
    verifier: Mapped[str | None] = mapped_column(String(64), index=True)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)  # kept only if the user asked
    # none | validator | client. A client-sealed object's key never reaches the validator.
    sealed_by: Mapped[str | None] = mapped_column(String(16))
    # "<algorithm>:<hex>" of the body as uploaded (the ciphertext, when the client sealed),
    # checked against the signed hash: a re-run of an upload recognises its object by it.
    # "blake3:" from the CLI; "sha256:" from other clients and before migration 0014.
    content_hash: Mapped[str | None] = mapped_column(String(80))
    # Permission bits (0o777) of the file it was uploaded from, given back to the file a
    # download writes; None for objects stored before migration 0011 or through S3.
    mode: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    committed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    segments: Mapped[list[Segment]] = relationship(
        back_populates="object", cascade="all, delete-orphan", passive_deletes=True
    )


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("object_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    object_id: Mapped[str] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    padding: Mapped[int] = mapped_column(Integer)
    shard_size: Mapped[int] = mapped_column(Integer)

    object: Mapped[StoredObject] = relationship(back_populates="segments")
    shards: Mapped[list[Shard]] = relationship(
        back_populates="segment", cascade="all, delete-orphan", passive_deletes=True
    )


class Shard(Base):
    __tablename__ = "shards"
    __table_args__ = (UniqueConstraint("segment_id", "share"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    share: Mapped[int] = mapped_column(Integer)
    shard_id: Mapped[str] = mapped_column(String(SHARD_ID), index=True)
    size: Mapped[int] = mapped_column(Integer)

    segment: Mapped[Segment] = relationship(back_populates="shards")
    placements: Mapped[list[Placement]] = relationship(
        back_populates="shard", cascade="all, delete-orphan", passive_deletes=True
    )


class Placement(Base):
    __tablename__ = "placements"
    __table_args__ = (UniqueConstraint("shard_id", "miner_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shard_id: Mapped[int] = mapped_column(ForeignKey("shards.id", ondelete="CASCADE"))
    miner_id: Mapped[int] = mapped_column(ForeignKey("miners.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # stored | lost
    # The shard's size, copied: what the verified-bytes triggers add and take off (migration
    # 0012), which still have it when the shard row went first (a cascade).
    size: Mapped[int] = mapped_column(Integer)
    receipt_json: Mapped[str] = mapped_column(Text)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Challenges: the latest verdict, when, and how many full-retrieval rechecks a timeout
    # has had (containment: not yet a failure, see challenger.py).
    last_challenged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_verdict: Mapped[str | None] = mapped_column(String(16))
    containment: Mapped[int] = mapped_column(Integer, default=0)

    shard: Mapped[Shard] = relationship(back_populates="placements")
    miner: Mapped[Miner] = relationship()


# A round's selection per miner reads only the rows it returns, whatever the table's size:
# the due ones in (last_challenged_at, id) order, and those in containment.
Index(
    "ix_placements_due",
    Placement.miner_id,
    Placement.state,
    Placement.last_challenged_at,
    Placement.id,
)
Index("ix_placements_contained", Placement.miner_id, Placement.state, Placement.containment)


class RepairItem(Base):
    __tablename__ = "repair_queue"
    __table_args__ = (UniqueConstraint("shard_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shard_id: Mapped[int] = mapped_column(ForeignKey("shards.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChallengeRecord(Base):
    """One challenge-log entry (:class:`validator.audit_log.LogEntry`) as a row."""

    __tablename__ = "challenge_log"
    # Each of the explorer's filters reads a range of one index, newest first (0009).
    __table_args__ = (
        Index("ix_challenge_log_miner_seq", "miner", "seq"),
        Index("ix_challenge_log_verdict_seq", "verdict", "seq"),
        Index("ix_challenge_log_kind_seq", "kind", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    validator: Mapped[str] = mapped_column(String(HOTKEY))
    miner: Mapped[str] = mapped_column(String(HOTKEY))
    shard_id: Mapped[str] = mapped_column(String(SHARD_ID), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[str] = mapped_column(String(64))
    indices: Mapped[str] = mapped_column(Text)  # JSON list
    root: Mapped[str] = mapped_column(String(SHARD_ID))
    issued_at: Mapped[float] = mapped_column(Float, index=True)  # unix seconds
    answered_at: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    proof_digest: Mapped[str] = mapped_column(String(64))
    leaf_count: Mapped[int] = mapped_column(Integer)
    leaf_hashes: Mapped[bytes] = mapped_column(LargeBinary)  # 32 bytes per index
    proof: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(160))
    entry_hash: Mapped[str] = mapped_column(String(64))


LATENCY_BINS = 53  # validator.challenge_stats.BINS: the histogram's columns

# Per miner per bucket (``span`` seconds from ``start``; span 0: all time) the counts and the
# latency histogram of its log entries: written with them, read by /v1/audit/summary.
challenge_stats = Table(
    "challenge_stats",
    Base.metadata,
    Column("span", Integer, primary_key=True),
    Column("start", BigInteger, primary_key=True),
    Column("miner", String(HOTKEY), primary_key=True),
    *(
        Column(name, BigInteger, nullable=False)
        for name in ("challenges", "pass", "wrong", "missing", "timeout")
    ),
    *(Column(f"bin{i:02d}", BigInteger, nullable=False) for i in range(LATENCY_BINS)),
)


# --- the S3 API (validator/s3/) ---------------------------------------------------------

S3_KEY = 1024  # S3's longest object key, in UTF-8 bytes


class S3AccessKey(Base):
    """An S3 access key. SigV4 needs the secret itself to recompute a signature, so it is
    kept encrypted (AES-GCM under a key file in the data dir), not hashed."""

    __tablename__ = "s3_keys"

    access_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    sealed_secret: Mapped[bytes] = mapped_column(LargeBinary)  # nonce + ciphertext + tag
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class S3Bucket(Base):
    """Bucket names are per user: a user never learns which names others took."""

    __tablename__ = "s3_buckets"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class S3Object(Base):
    __tablename__ = "s3_objects"
    __table_args__ = (UniqueConstraint("bucket_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("s3_buckets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(S3_KEY))
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(64))  # quoted, as S3 sends it
    content_type: Mapped[str] = mapped_column(String(255))
    metadata_json: Mapped[str] = mapped_column(Text)  # x-amz-meta-* (names lower case)
    # Content-Encoding, Content-Disposition...: stored and served back, as S3 (migration 0010)
    headers_json: Mapped[str] = mapped_column(Text, server_default="{}")
    upload_id: Mapped[str | None] = mapped_column(String(32))  # the multipart upload it was
    checksum: Mapped[str | None] = mapped_column(String(128))  # "crc32:<base64>", single PUTs
    modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class S3Upload(Base):
    """A multipart upload in progress; its parts are committed objects already."""

    __tablename__ = "s3_uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    bucket_id: Mapped[int] = mapped_column(
        ForeignKey("s3_buckets.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(S3_KEY))
    content_type: Mapped[str] = mapped_column(String(255))
    metadata_json: Mapped[str] = mapped_column(Text)
    headers_json: Mapped[str] = mapped_column(Text, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class S3Part(Base):
    """One stored object holding bytes of an S3 object (a single PUT is one part), or a
    part of a multipart upload in progress: exactly one of the two owners is set."""

    __tablename__ = "s3_parts"
    __table_args__ = (UniqueConstraint("upload_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    s3_object_id: Mapped[int | None] = mapped_column(
        ForeignKey("s3_objects.id", ondelete="CASCADE"), index=True
    )
    upload_id: Mapped[str | None] = mapped_column(ForeignKey("s3_uploads.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    stored_id: Mapped[str] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(64))
    # The part's additional checksum as uploaded ("crc32:<base64>"), for the object's
    # composite checksum at CompleteMultipartUpload (0012).
    checksum: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
