"""The local chain's rules over its database: blocks, registration, weights, epoch close.

Synchronous and free of HTTP; :mod:`chain.service` runs it in a thread. Every public method
is one transaction. Errors (``ChainError``, each with a stable ``reason``)::

    ChainError
    ├── NotRegistered        not_registered    the hotkey has no UID
    ├── SubnetFull           subnet_full       every UID is still immune
    ├── BadAxon              bad_axon
    ├── EpochNotDue          epoch_not_due     its last block is not produced yet
    └── WeightsRejected                        set_weights, checked as subtensor does:
        ├── BadVersion       bad_version       version_key differs from the chain's
        ├── BadWeights       bad_weights       lengths differ, negative/NaN, or all zero
        ├── DuplicateUid     duplicate_uid
        ├── UnknownUid       unknown_uid
        ├── NoPermit         no_permit         not among the top stakers
        ├── RateLimited      rate_limited      fewer than weights_rate_limit blocks since last
        └── BadFigures       bad_figures       figures for a UID not weighted, or out of range

Rules and choices:

- **Blocks.** ``advance()`` produces one block; when ``block % tempo == 0`` it closes epoch
  ``block // tempo``, covering the ``tempo`` blocks before it. A close that failed (or a
  crash between the block and the close) is retried by the next ``advance()`` and by
  ``close_due_epochs()``, which a start runs; epochs always close in order.
- **Permits** go to the ``max_validators`` registered hotkeys with the most stake (ties: lower
  UID), stake > 0 only. They are computed from stake whenever needed, never stored.
- **Registration.** The next free UID, or on a full subnet the UID with the lowest pruning
  score outside immunity (``block - registered_at >= immunity_period``). The pruning score is
  last epoch's ``incentive + dividends``: the share of emission the UID earned, whether as a
  miner or a validator. Ties go to the oldest registration, then the lower UID. If every UID
  is immune the registration is refused (``subnet_full``); subtensor would prune an immune
  one instead. The replaced UID loses its weights, bonds and the weights others set on it.
- **Rate limit.** A validator that never set weights may set them at once.
- **Figures.** A miner's capacity and availability in the ledger are the stake-weighted means
  of what the permitted validators attached to their latest weights for it. A capacity is a
  byte count that fits the ledger's 64-bit column, an availability a number in [0, 1].
- **Nothing stored halts a close.** Every stored weights, bonds and figures row is checked
  again when an epoch closes; a malformed one (written by an older version, or by hand) is
  left out of that close and named in ``EpochSummary.skipped``, which the service logs and
  counts. One participant's input can never stop issuance.
- **Epoch close** is one transaction: Yuma, the span's emission split by era, one ledger row
  per (epoch, era, hotkey), the neurons' new outputs and bonds, the ``epochs`` row, and the
  issuance. The ``epochs`` primary key makes a second close a no-op, even a racing one.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from chain.accounting import credit_epoch
from chain.emission import DEFAULT_SPLIT, EmissionSchedule, EmissionSplit
from chain.genesis import Genesis
from chain.metagraph import Metagraph, Neuron
from chain.models import (
    BondsRow,
    ChainStateRow,
    EpochRow,
    LedgerRow,
    NeuronRow,
    StakeRow,
    WeightsRow,
)
from chain.yuma import YumaInputs, YumaParams, yuma_consensus


class ChainError(Exception):
    reason: ClassVar[str] = "chain_error"


class NotRegistered(ChainError):
    reason = "not_registered"


class SubnetFull(ChainError):
    reason = "subnet_full"


class BadAxon(ChainError):
    reason = "bad_axon"


class EpochNotDue(ChainError):
    reason = "epoch_not_due"


class WeightsRejected(ChainError):
    reason = "weights_rejected"


class BadVersion(WeightsRejected):
    reason = "bad_version"


class BadWeights(WeightsRejected):
    reason = "bad_weights"


class DuplicateUid(WeightsRejected):
    reason = "duplicate_uid"


class UnknownUid(WeightsRejected):
    reason = "unknown_uid"


class NoPermit(WeightsRejected):
    reason = "no_permit"


class RateLimited(WeightsRejected):
    reason = "rate_limited"


class BadFigures(WeightsRejected):
    reason = "bad_figures"


@dataclass(frozen=True, slots=True)
class ChainParams:
    """The subnet's hyperparameters (subtensor's defaults)."""

    max_uids: int = 256
    max_validators: int = 64
    immunity_period: int = 4096
    weights_rate_limit: int = 100
    version_key: int = 0
    split: EmissionSplit = DEFAULT_SPLIT
    yuma: YumaParams = field(default_factory=YumaParams)

    def __post_init__(self) -> None:
        if self.max_uids < 1 or self.max_validators < 0:
            raise ValueError("max_uids must be >= 1 and max_validators >= 0")
        if self.immunity_period < 0 or self.weights_rate_limit < 0:
            raise ValueError("immunity_period and weights_rate_limit must be >= 0")


@dataclass(frozen=True, slots=True)
class MinerFigures:
    """What a validator measured of a miner, attached to its weights."""

    capacity_bytes: int
    availability: float


@dataclass(frozen=True, slots=True)
class Registration:
    uid: int
    created: bool
    replaced: str | None = None  # the hotkey that was pruned, if any


MAX_CAPACITY_BYTES = 2**63 - 1  # the ledger's BigInteger column


@dataclass(frozen=True, slots=True)
class EpochSummary:
    number: int
    end_block: int
    start_issuance: int
    end_issuance: int
    emission: int
    first_era: int
    last_era: int
    unclaimed: int
    neurons: int
    # Stored rows this close left out as malformed, and why (not kept: the close reports it).
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__ if name != "skipped"}


@dataclass(frozen=True, slots=True)
class Credit:
    """One ledger row: what ``hotkey`` earned in one era of one epoch (rao)."""

    epoch: int
    era: int
    hotkey: str
    uid: int | None
    amount: int
    incentive: int
    dividends: int
    owner: int
    capacity_bytes: int | None
    availability: float | None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def validator_permits(stake: Sequence[int], max_validators: int) -> list[bool]:
    """Top ``max_validators`` by stake (ties: lower UID), stake > 0 only."""
    ranked = sorted((uid for uid in range(len(stake)) if stake[uid] > 0), key=lambda u: -stake[u])
    chosen = set(ranked[:max_validators])
    return [uid in chosen for uid in range(len(stake))]


class LocalChain:
    """The chain's state in a database. Build with :meth:`open` (migrated and initialised)."""

    def __init__(self, engine: Engine, params: ChainParams = ChainParams()) -> None:
        self.engine = engine
        self.params = params
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self._closed_through: int | None = None  # every epoch up to this one is closed

    # -- setup and clock -------------------------------------------------------------------

    def initialise(self, genesis: Genesis) -> bool:
        """Write genesis if the database has no chain yet; True if it did."""
        with self.sessions.begin() as s:
            if s.get(ChainStateRow, 1) is not None:
                return False
            s.add(
                ChainStateRow(
                    id=1,
                    block=0,
                    issuance=genesis.issuance,
                    genesis_issuance=genesis.issuance,
                    tempo=genesis.tempo,
                    owner_hotkey=genesis.owner_hotkey,
                )
            )
            s.add_all(StakeRow(hotkey=h, amount=a) for h, a in genesis.stakes.items())
        return True

    def block(self) -> int:
        with self.sessions() as s:
            return _state(s).block

    def tempo(self) -> int:
        with self.sessions() as s:
            return _state(s).tempo

    def advance(self, blocks: int = 1) -> list[EpochSummary]:
        """Produce ``blocks`` blocks, closing each epoch as its last block is produced (and
        any earlier one whose close failed)."""
        closed = []
        for _ in range(blocks):
            with self.sessions.begin() as s:
                state = _state(s, lock=True)
                state.block += 1
                due = state.block // state.tempo
            if self._closed_through is None or due > self._closed_through:
                closed.extend(self.close_due_epochs())
        return closed

    def close_due_epochs(self) -> list[EpochSummary]:
        """Close, in order, every epoch whose last block exists but which is not closed."""
        with self.sessions() as s:
            state = _state(s)
            due = state.block // state.tempo
            done = set(s.scalars(select(EpochRow.number)))
        closed = []
        for number in range(1, due + 1):
            if number not in done:
                summary = self.close_epoch(number)
                if summary is not None:
                    closed.append(summary)
        self._closed_through = due
        return closed

    # -- registration ----------------------------------------------------------------------

    def register(self, hotkey: str) -> Registration:
        with self.sessions.begin() as s:
            existing = s.scalar(select(NeuronRow).where(NeuronRow.hotkey == hotkey))
            if existing is not None:
                return Registration(existing.uid, created=False)
            block = _state(s, lock=True).block
            count = s.scalar(select(func.count()).select_from(NeuronRow)) or 0
            if count < self.params.max_uids:
                s.add(NeuronRow(uid=count, hotkey=hotkey, registered_at=block, **_FRESH))
                return Registration(count, created=True)
            mature = s.scalars(
                select(NeuronRow).where(
                    NeuronRow.registered_at <= block - self.params.immunity_period
                )
            ).all()
            if not mature:
                raise SubnetFull(
                    f"all {count} UIDs are within their {self.params.immunity_period}-block "
                    "immunity period; try again later"
                )
            victim = min(mature, key=lambda n: (n.incentive + n.dividends, n.registered_at, n.uid))
            replaced = victim.hotkey
            _forget_uid(s, victim.uid)
            victim.hotkey = hotkey
            victim.registered_at = block
            victim.axon_host = victim.axon_port = victim.last_update = None
            for name, value in _FRESH.items():
                setattr(victim, name, value)
            return Registration(victim.uid, created=True, replaced=replaced)

    def serve_axon(self, hotkey: str, host: str, port: int) -> int:
        if not _valid_host(host):
            raise BadAxon(f"host {host[:64]!r} is not a hostname, IPv4 or [IPv6] address")
        if not 1 <= port <= 65535:
            raise BadAxon(f"port {port} is not a TCP port (1-65535)")
        with self.sessions.begin() as s:
            neuron = _neuron(s, hotkey)
            neuron.axon_host, neuron.axon_port = host, port
            return neuron.uid

    # -- weights ---------------------------------------------------------------------------

    def set_weights(
        self,
        hotkey: str,
        uids: Sequence[int],
        weights: Sequence[float],
        version_key: int,
        figures: Mapping[int, MinerFigures] | None = None,
    ) -> int:
        """Store ``hotkey``'s normalised weights; the block they count from is returned."""
        if version_key != self.params.version_key:
            raise BadVersion(
                f"version_key {version_key} does not match the chain's {self.params.version_key}"
            )
        if len(uids) != len(weights):
            raise BadWeights(f"{len(uids)} uids but {len(weights)} weights: give one per uid")
        if len(uids) > self.params.max_uids:
            raise BadWeights(f"{len(uids)} weights for a subnet of at most {self.params.max_uids}")
        if len(set(uids)) != len(uids):
            dupes = sorted(u for u, n in Counter(uids).items() if n > 1)
            raise DuplicateUid(f"uid(s) {dupes[:8]} appear more than once")
        values = _checked_weights(weights)
        # Before the transaction: figures need no state, and are the bound the ledger needs.
        stored_figures = _checked_figures(figures, set(uids))
        with self.sessions.begin() as s:
            validator = _neuron(s, hotkey)
            state = _state(s)
            n = s.scalar(select(func.count()).select_from(NeuronRow)) or 0
            unknown = sorted(u for u in uids if not 0 <= u < n)
            if unknown:
                raise UnknownUid(f"uid(s) {unknown[:8]} are not registered (the subnet has {n})")
            if not self._permits(s)[validator.uid]:
                raise NoPermit(
                    f"{hotkey} has no validator permit: permits go to the top "
                    f"{self.params.max_validators} stakers"
                )
            last = validator.last_update
            if last is not None and state.block - last < self.params.weights_rate_limit:
                wait = self.params.weights_rate_limit - (state.block - last)
                raise RateLimited(
                    f"weights were set at block {last}; the next may be set in {wait} blocks"
                )
            kept = [(u, v) for u, v in zip(uids, values, strict=True) if v > 0]
            row = s.get(WeightsRow, validator.uid)
            if row is None:
                row = WeightsRow(validator_uid=validator.uid)
                s.add(row)
            row.set_at = state.block
            row.uids = [u for u, _ in kept]
            row.values = [v for _, v in kept]
            row.figures = stored_figures
            validator.last_update = state.block
            return state.block

    # -- reads -----------------------------------------------------------------------------

    def metagraph(self) -> Metagraph:
        with self.sessions() as s:
            state = _state(s)
            neurons = s.scalars(select(NeuronRow).order_by(NeuronRow.uid)).all()
            stake = _stakes(s, neurons)
            permit = validator_permits(stake, self.params.max_validators)
            return Metagraph(
                block=state.block,
                tempo=state.tempo,
                version_key=self.params.version_key,
                neurons=tuple(
                    Neuron(
                        uid=n.uid,
                        hotkey=n.hotkey,
                        stake=stake[n.uid],
                        validator_permit=permit[n.uid],
                        axon=None if n.axon_host is None else f"{n.axon_host}:{n.axon_port}",
                        incentive=n.incentive,
                        dividends=n.dividends,
                        trust=n.trust,
                        consensus=n.consensus,
                        last_update=n.last_update,
                        registered_at=n.registered_at,
                    )
                    for n in neurons
                ),
            )

    def chain_info(self) -> dict[str, int | str]:
        with self.sessions() as s:
            state = _state(s)
            schedule = EmissionSchedule(genesis_issuance=state.genesis_issuance)
            return {
                "block": state.block,
                "tempo": state.tempo,
                "issuance": state.issuance,
                "era": schedule.era(state.issuance),
                "block_emission": schedule.block_emission(state.issuance),
                "owner": state.owner_hotkey,
                "version_key": self.params.version_key,
            }

    def epochs(self, limit: int = 100) -> list[EpochSummary]:
        with self.sessions() as s:
            rows = s.scalars(select(EpochRow).order_by(EpochRow.number.desc()).limit(limit))
            return [_summary(r) for r in rows]

    def ledger(
        self, *, epoch: int | None = None, era: int | None = None, hotkey: str | None = None,
        since_epoch: int | None = None,
    ) -> list[Credit]:  # fmt: skip
        query = select(LedgerRow).order_by(LedgerRow.epoch, LedgerRow.era, LedgerRow.id)
        if epoch is not None:
            query = query.where(LedgerRow.epoch == epoch)
        if since_epoch is not None:
            query = query.where(LedgerRow.epoch >= since_epoch)
        if era is not None:
            query = query.where(LedgerRow.era == era)
        if hotkey is not None:
            query = query.where(LedgerRow.hotkey == hotkey)
        with self.sessions() as s:
            return [
                Credit(
                    epoch=r.epoch,
                    era=r.era,
                    hotkey=r.hotkey,
                    uid=r.uid,
                    amount=r.amount,
                    incentive=r.incentive,
                    dividends=r.dividends,
                    owner=r.owner,
                    capacity_bytes=r.capacity_bytes,
                    availability=r.availability,
                )
                for r in s.scalars(query)
            ]

    def balances(self, hotkey: str | None = None) -> dict[str, dict[int, int]]:
        """Rao credited per hotkey, per era."""
        query = select(LedgerRow.hotkey, LedgerRow.era, func.sum(LedgerRow.amount)).group_by(
            LedgerRow.hotkey, LedgerRow.era
        )
        if hotkey is not None:
            query = query.where(LedgerRow.hotkey == hotkey)
        totals: dict[str, dict[int, int]] = defaultdict(dict)
        with self.sessions() as s:
            for key, era, amount in s.execute(query):
                totals[key][era] = int(amount)
        return dict(totals)

    # -- epoch close -----------------------------------------------------------------------

    def close_epoch(self, number: int) -> EpochSummary | None:
        """Close epoch ``number`` (blocks ``((number-1)*tempo, number*tempo]``) in one
        transaction; None if it was already closed."""
        try:
            with self.sessions.begin() as s:
                return self._close(s, number)
        except IntegrityError:
            with self.sessions() as s:
                if s.get(EpochRow, number) is not None:
                    return None  # a concurrent close won the race; it credited once
            raise

    def _close(self, s: Session, number: int) -> EpochSummary | None:
        if s.get(EpochRow, number) is not None:
            return None
        state = _state(s, lock=True)
        if number < 1 or number * state.tempo > state.block:
            raise EpochNotDue(f"epoch {number} ends at block {number * state.tempo}")
        if number > 1 and s.get(EpochRow, number - 1) is None:
            raise EpochNotDue(f"epoch {number - 1} must be closed before epoch {number}")
        neurons = s.scalars(select(NeuronRow).order_by(NeuronRow.uid)).all()
        hotkeys = [n.hotkey for n in neurons]
        stake = _stakes(s, neurons)
        permit = validator_permits(stake, self.params.max_validators)
        skipped: list[str] = []
        weight_rows = s.scalars(select(WeightsRow)).all()
        weights = _usable_rows("weights", weight_rows, len(neurons), skipped)
        bonds = _usable_rows("bonds", s.scalars(select(BondsRow)).all(), len(neurons), skipped)
        result = yuma_consensus(YumaInputs(stake, permit, weights, bonds, self.params.yuma))
        span = EmissionSchedule(genesis_issuance=state.genesis_issuance).emit(
            state.issuance, state.tempo
        )
        figures = _miner_figures(weight_rows, stake, permit, skipped)

        ledger: list[dict[str, Any]] = []
        unclaimed = 0
        for era in span.eras:
            credits = credit_epoch(
                era.emitted, result, hotkeys, state.owner_hotkey, self.params.split
            )
            unclaimed += credits.unclaimed
            uid_of = {h: uid for uid, h in enumerate(hotkeys)}
            for hotkey, amount in credits.credits.items():
                if amount == 0:
                    continue
                uid = uid_of.get(hotkey)
                incentive = credits.incentive[uid] if uid is not None else 0
                dividends = credits.dividends[uid] if uid is not None else 0
                capacity, availability = (
                    figures.get(uid, (None, None)) if uid is not None else (None, None)
                )
                ledger.append(
                    {
                        "epoch": number,
                        "era": era.era,
                        "hotkey": hotkey,
                        "uid": uid,
                        "amount": amount,
                        "incentive": incentive,
                        "dividends": dividends,
                        "owner": amount - incentive - dividends,
                        "capacity_bytes": capacity,
                        "availability": availability,
                    }
                )
        row = EpochRow(
            number=number,
            end_block=number * state.tempo,
            start_issuance=span.start_issuance,
            end_issuance=span.end_issuance,
            emission=span.emitted,
            first_era=span.eras[0].era,
            last_era=span.eras[-1].era,
            unclaimed=unclaimed,
            neurons=len(neurons),
        )
        s.add(row)
        s.flush()  # the epochs row first: a racing close fails here, before any credit
        if ledger:
            s.execute(insert(LedgerRow), ledger)
        if neurons:
            s.execute(
                update(NeuronRow),
                [
                    {
                        "uid": uid,
                        "incentive": result.incentive[uid],
                        "dividends": result.dividends[uid],
                        "trust": result.validator_trust[uid],
                        "consensus": result.consensus[uid],
                        "rank": result.ranks[uid],
                    }
                    for uid in range(len(neurons))
                ],
            )
        s.execute(delete(BondsRow))
        if result.bonds:
            s.execute(
                insert(BondsRow),
                [
                    {"validator_uid": i, "uids": list(row_.keys()), "values": list(row_.values())}
                    for i, row_ in result.bonds.items()
                ],
            )
        state.issuance = span.end_issuance
        s.flush()
        return _summary(row, tuple(skipped))

    def _permits(self, s: Session) -> list[bool]:
        neurons = s.scalars(select(NeuronRow).order_by(NeuronRow.uid)).all()
        return validator_permits(_stakes(s, neurons), self.params.max_validators)


_FRESH: dict[str, Any] = {
    "incentive": 0.0,
    "dividends": 0.0,
    "trust": 0.0,
    "consensus": 0.0,
    "rank": 0.0,
}


def _state(s: Session, *, lock: bool = False) -> ChainStateRow:
    query = select(ChainStateRow).where(ChainStateRow.id == 1)
    if lock:
        query = query.with_for_update()
    state = s.scalar(query)
    if state is None:
        raise ChainError("the chain has no genesis yet: start it with a genesis file")
    return state


def _neuron(s: Session, hotkey: str) -> NeuronRow:
    neuron = s.scalar(select(NeuronRow).where(NeuronRow.hotkey == hotkey))
    if neuron is None:
        raise NotRegistered(f"{hotkey} is not registered on this subnet: register it first")
    return neuron


def _stakes(s: Session, neurons: Sequence[NeuronRow]) -> list[int]:
    query = select(StakeRow.hotkey, StakeRow.amount).where(
        StakeRow.hotkey.in_([n.hotkey for n in neurons])
    )
    amounts: dict[str, int] = dict(s.execute(query).all())
    return [amounts.get(n.hotkey, 0) for n in neurons]


def _forget_uid(s: Session, uid: int) -> None:
    """Drop everything that names ``uid``: its rows, and its column in others'."""
    s.execute(delete(WeightsRow).where(WeightsRow.validator_uid == uid))
    s.execute(delete(BondsRow).where(BondsRow.validator_uid == uid))
    for row in [*s.scalars(select(WeightsRow)), *s.scalars(select(BondsRow))]:
        if uid in row.uids:
            pairs = [(u, v) for u, v in zip(row.uids, row.values, strict=True) if u != uid]
            row.uids = [u for u, _ in pairs]
            row.values = [v for _, v in pairs]
            if isinstance(row, WeightsRow) and row.figures:
                row.figures = {k: v for k, v in row.figures.items() if k != str(uid)}


def _valid_host(host: str) -> bool:
    # ASCII only: a name beyond it is written in punycode, and text that is not even valid
    # UTF-8 (a lone surrogate) could not be stored.
    if not 0 < len(host) <= 255 or not host.isascii() or not host.isprintable():
        return False
    if any(c.isspace() or c in "/@?#" for c in host):
        return False
    return ":" not in host or (host.startswith("[") and host.endswith("]"))


def _checked_weights(weights: Sequence[float]) -> list[float]:
    values = []
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, int | float):
            raise BadWeights(f"weight {i!r} is {w!r:.32}: weights are numbers")
        try:
            value = float(w)  # an int beyond a float's range raises OverflowError
        except OverflowError:
            value = math.inf
        if not math.isfinite(value) or value < 0:
            raise BadWeights(f"weight {i} is {w!r:.32}: weights must be finite and non-negative")
        values.append(value)
    # Scaled by the largest first: the sum of weights near 1e308 would overflow.
    largest = max(values, default=0.0)
    if not largest > 0:
        raise BadWeights("the weights sum to 0: give at least one positive weight")
    scaled = [v / largest for v in values]
    total = math.fsum(scaled)
    return [v / total for v in scaled]


def _checked_figures(
    figures: Mapping[int, MinerFigures] | None, weighted: set[int]
) -> dict[str, Any] | None:
    if not figures:
        return None
    stored = {}
    for uid, fig in figures.items():
        if uid not in weighted:
            raise BadFigures(f"figures for uid {uid}, which these weights do not name")
        problem = _figure_problem(fig.capacity_bytes, fig.availability)
        if problem is not None:
            raise BadFigures(f"uid {uid}: {problem}")
        stored[str(uid)] = {
            "capacity_bytes": fig.capacity_bytes,
            "availability": float(fig.availability),
        }
    return stored


def _figure_problem(capacity: object, availability: object) -> str | None:
    """What is wrong with one miner's figures, or None: the one rule, at the door and at
    every close."""
    if (
        isinstance(capacity, bool)
        or not isinstance(capacity, int)
        or not 0 <= capacity <= MAX_CAPACITY_BYTES
    ):
        return f"capacity_bytes {capacity!r:.32} is not a byte count below 2**63"
    if isinstance(availability, bool) or not isinstance(availability, int | float):
        return f"availability {availability!r:.32} is not a number"
    if not 0.0 <= availability <= 1.0:  # NaN fails too
        return f"availability {availability!r:.32} is not within [0, 1]"
    return None


def _usable_rows(
    what: str, rows: Sequence[WeightsRow | BondsRow], n: int, skipped: list[str]
) -> dict[int, dict[int, float]]:
    """Stored weights or bonds as Yuma takes them; a malformed row is left out and reported.

    Rows are checked when stored, but a close must not stop on one that is not (an older
    version's, one edited by hand): Yuma raises on what it cannot use.
    """
    usable = {}
    for row in rows:
        problem = _matrix_row_problem(row.validator_uid, row.uids, row.values, n)
        if problem is None:
            usable[row.validator_uid] = dict(zip(row.uids, row.values, strict=True))
        else:
            skipped.append(f"{what} of uid {row.validator_uid!r:.32}: {problem}")
    return usable


def _matrix_row_problem(validator_uid: object, uids: object, values: object, n: int) -> str | None:
    if not _is_uid(validator_uid, n):
        return "the validator is not a registered uid"
    if not isinstance(uids, list) or not isinstance(values, list) or len(uids) != len(values):
        return "uids and values are not two lists of one length"
    if not all(_is_uid(u, n) for u in uids) or len(set(uids)) != len(uids):
        return "a uid is not registered, or is named twice"
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in values
    ):
        return "a value is not a number in [0, 1] (rows are stored normalised)"
    return None


def _is_uid(value: object, n: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n


def _miner_figures(
    rows: Sequence[WeightsRow],
    stake: Sequence[int],
    permit: Sequence[bool],
    skipped: list[str],
) -> dict[int, tuple[int, float]]:
    """Per miner UID, the stake-weighted mean capacity and availability reported by permitted
    validators (an unweighted mean if they all have zero stake, which permits exclude).

    A row's figures with anything malformed are left out whole, and reported: means of
    figures within bounds stay within them, so every ledger row fits its columns."""
    sums: dict[int, list[int | float]] = defaultdict(lambda: [0, 0, 0.0])  # stake, cap·s, av·s
    for row in rows:
        i = row.validator_uid
        if not row.figures or not _is_uid(i, len(stake)) or not permit[i]:
            continue
        problem = _figures_row_problem(row.figures, len(stake))
        if problem is not None:
            skipped.append(f"figures of uid {i}: {problem}")
            continue
        for key, fig in row.figures.items():
            entry = sums[int(key)]
            entry[0] += stake[i]
            entry[1] += stake[i] * fig["capacity_bytes"]
            entry[2] += stake[i] * fig["availability"]
    return {
        uid: (int(cap_s // weight), av_s / weight)
        for uid, (weight, cap_s, av_s) in sums.items()
        if weight > 0
    }


def _figures_row_problem(figures: object, n: int) -> str | None:
    if not isinstance(figures, dict):
        return "not an object keyed by uid"
    for key, fig in figures.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 5):
            return f"key {key!r:.32} is not a uid"
        if not _is_uid(int(key), n):
            return f"uid {key} is not registered"
        if not isinstance(fig, dict):
            return f"uid {key}: not an object"
        problem = _figure_problem(fig.get("capacity_bytes"), fig.get("availability"))
        if problem is not None:
            return f"uid {key}: {problem}"
    return None


def _summary(row: EpochRow, skipped: tuple[str, ...] = ()) -> EpochSummary:
    return EpochSummary(
        number=row.number,
        end_block=row.end_block,
        start_issuance=row.start_issuance,
        end_issuance=row.end_issuance,
        emission=row.emission,
        first_era=row.first_era,
        last_era=row.last_era,
        unclaimed=row.unclaimed,
        neurons=row.neurons,
        skipped=skipped,
    )
