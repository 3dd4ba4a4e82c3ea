"""The local chain's tables (SQLAlchemy 2.0 typed models).

- ``chain_state``: one row: the block height, issuance (rao), tempo and owner.
- ``stakes``: stake per hotkey (rao), from the genesis file; registered or not.
- ``neurons``: one row per UID: its hotkey, axon, registration block and last epoch's
  outputs. UIDs are dense (0..n-1) and reused when a registration prunes one.
- ``weights``: one row per validator UID: its latest normalised weights (parallel JSON
  lists) and the per-miner figures it attached.
- ``bonds``: one row per validator UID: its bonds after the last epoch.
- ``epochs``: one row per closed epoch, keyed by its number: the row is what makes closing
  idempotent (it is written in the same transaction as the credits).
- ``ledger``: the credits: per epoch, era and hotkey, in rao.

Amounts are integer rao in ``BigInteger``: 21M TAO is 2.1e16 rao, well inside int64.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from protocol.db import NAMING_CONVENTION

HOTKEY = 64  # ss58 addresses are 48 characters; room to spare


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ChainStateRow(Base):
    __tablename__ = "chain_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger)
    issuance: Mapped[int] = mapped_column(BigInteger)
    genesis_issuance: Mapped[int] = mapped_column(BigInteger)
    tempo: Mapped[int] = mapped_column(Integer)
    owner_hotkey: Mapped[str] = mapped_column(String(HOTKEY))


class StakeRow(Base):
    __tablename__ = "stakes"

    hotkey: Mapped[str] = mapped_column(String(HOTKEY), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class NeuronRow(Base):
    __tablename__ = "neurons"

    uid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hotkey: Mapped[str] = mapped_column(String(HOTKEY), unique=True)
    registered_at: Mapped[int] = mapped_column(BigInteger)
    axon_host: Mapped[str | None] = mapped_column(String(255))
    axon_port: Mapped[int | None] = mapped_column(Integer)
    last_update: Mapped[int | None] = mapped_column(BigInteger)
    incentive: Mapped[float] = mapped_column(Float, default=0.0)
    dividends: Mapped[float] = mapped_column(Float, default=0.0)
    trust: Mapped[float] = mapped_column(Float, default=0.0)
    consensus: Mapped[float] = mapped_column(Float, default=0.0)
    rank: Mapped[float] = mapped_column(Float, default=0.0)


class WeightsRow(Base):
    __tablename__ = "weights"

    validator_uid: Mapped[int] = mapped_column(
        ForeignKey("neurons.uid", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    set_at: Mapped[int] = mapped_column(BigInteger)
    uids: Mapped[list[int]] = mapped_column(JSON)
    values: Mapped[list[float]] = mapped_column(JSON)
    # {"<uid>": {"capacity_bytes": int, "availability": float}}, or None
    figures: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class BondsRow(Base):
    __tablename__ = "bonds"

    validator_uid: Mapped[int] = mapped_column(
        ForeignKey("neurons.uid", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    uids: Mapped[list[int]] = mapped_column(JSON)
    values: Mapped[list[float]] = mapped_column(JSON)


class EpochRow(Base):
    __tablename__ = "epochs"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    end_block: Mapped[int] = mapped_column(BigInteger)
    start_issuance: Mapped[int] = mapped_column(BigInteger)
    end_issuance: Mapped[int] = mapped_column(BigInteger)
    emission: Mapped[int] = mapped_column(BigInteger)
    first_era: Mapped[int] = mapped_column(Integer)
    last_era: Mapped[int] = mapped_column(Integer)
    unclaimed: Mapped[int] = mapped_column(BigInteger)
    neurons: Mapped[int] = mapped_column(Integer)


class LedgerRow(Base):
    __tablename__ = "ledger"
    __table_args__ = (UniqueConstraint("epoch", "era", "hotkey"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    epoch: Mapped[int] = mapped_column(ForeignKey("epochs.number"), index=True)
    era: Mapped[int] = mapped_column(Integer, index=True)
    hotkey: Mapped[str] = mapped_column(String(HOTKEY), index=True)
    uid: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    incentive: Mapped[int] = mapped_column(BigInteger)  # of amount, as a miner
    dividends: Mapped[int] = mapped_column(BigInteger)  # of amount, as a validator
    owner: Mapped[int] = mapped_column(BigInteger)  # of amount, as the owner (cut + unclaimed)
    capacity_bytes: Mapped[int | None] = mapped_column(BigInteger)
    availability: Mapped[float | None] = mapped_column(Float)
