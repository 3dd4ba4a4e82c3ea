"""Yuma consensus: one epoch of subtensor's reward rule, as a pure function.

With n UIDs, W_ij the weight validator i gives UID j and B the previous epoch's bonds:

1. Only validators with a permit count. Their weight rows drop self-weight (subtensor masks
   the diagonal) and are normalised to sum 1; a row summing to 0 stays 0. Stake is
   normalised over them: ``S_i = stake_i / sum(permitted stake)``, 0 without a permit, all 0
   when no permitted stake exists.
2. Consensus is the stake-weighted κ-median of each column::

       c_j = max { w : sum(S_i for i with W_ij >= w) >= κ }   (w over column j's values and 0)

   The stake voting at least c_j is >= κ and the stake voting above it is < κ. So validators
   holding less than κ of the stake cannot lift c_j above every vote of the others: for any w
   above all of those, only they vote >= w. Subtensor's ``weighted_median`` (minority 1-κ)
   picks the same value.
3. Clipped weights ``W̄_ij = min(W_ij, c_j)``.
4. Ranks ``R_j = sum_i S_i·W̄_ij``; incentive ``I = R / sum(R)``, all 0 if that sum is 0.
5. Validator trust ``T_i = sum_j W̄_ij``.
6. Bonds: ``ΔB_ij = S_i·W̄_ij / R_j`` (column-normalised), B_prev column-normalised, and
   ``B = colnorm(alpha·ΔB + (1-alpha)·B_prev)``. The last normalisation is subtensor's too:
   each miner's bonds then split that miner's whole incentive, so a miner first found this
   epoch pays its discoverers in full.
7. Dividends ``D_i = sum_j B_ij·I_j``, normalised (all 0 if the sum is 0).

Bonds of validators without a permit are dropped (subtensor clears them), so they earn no
dividends. Previous bonds naming UIDs beyond n (a resized subnet) are dropped; weights
naming them are an error, as is any negative, NaN or infinite value.

Numbers: stake is turned into exact integers, so the median's ``>= κ`` tests are exact (a
coalition of exactly κ decides; less never does). The rest is float, summed with
``math.fsum`` (exactly rounded), so no output depends on the order of UIDs or rows.
Incentive and dividends sum to 1 up to float rounding; ``chain.accounting`` turns them into
exact rao.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import TypeAlias

Weight: TypeAlias = int | float | Fraction
WeightRow: TypeAlias = Mapping[int, Weight] | Sequence[Weight]
"""One validator's row: sparse ``{uid: weight}`` or dense, one value per UID."""
Matrix: TypeAlias = Mapping[int, WeightRow]
"""Rows keyed by validator UID."""

_FLOAT_MAX = sys.float_info.max
_SAFE_TO_SUM = _FLOAT_MAX / 2**20  # more than a million of these still sum to a float
_Row: TypeAlias = tuple[list[int], list[float]]
"""A row's UIDs and their weights, as parallel lists (cheaper than pairs in pure Python)."""


@dataclass(frozen=True, slots=True)
class YumaParams:
    """``kappa``: the stake share that sets consensus. ``bond_alpha``: weight of this epoch's
    bonds in the moving average."""

    kappa: Fraction | float | int = Fraction(1, 2)
    bond_alpha: float = 0.1

    def __post_init__(self) -> None:
        if not (isinstance(self.kappa, Fraction | float | int) and 0 < self.kappa <= 1):
            raise ValueError(f"kappa must be within (0, 1], got {self.kappa!r}")
        if not 0 <= self.bond_alpha <= 1:  # also rejects NaN
            raise ValueError(f"bond_alpha must be within [0, 1], got {self.bond_alpha!r}")


@dataclass(frozen=True, slots=True)
class YumaInputs:
    """One epoch's metagraph: per-UID ``stake`` and ``validator_permit``, the validators'
    ``weights`` (raw or normalised; rows of UIDs without a permit are ignored) and the
    ``bonds`` the previous epoch returned (empty for the first). Nothing here is mutated."""

    stake: Sequence[Weight]
    validator_permit: Sequence[bool]
    weights: Matrix
    bonds: Matrix = field(default_factory=dict)
    params: YumaParams = YumaParams()

    def __post_init__(self) -> None:
        if len(self.validator_permit) != len(self.stake):
            raise ValueError(
                f"validator_permit has {len(self.validator_permit)} entries "
                f"but stake has {len(self.stake)}"
            )

    @property
    def n(self) -> int:
        return len(self.stake)


@dataclass(frozen=True, slots=True)
class YumaResult:
    """Per-UID outputs of one epoch, and the bonds to pass to the next one."""

    consensus: tuple[float, ...]
    ranks: tuple[float, ...]
    incentive: tuple[float, ...]
    dividends: tuple[float, ...]
    validator_trust: tuple[float, ...]
    bonds: Mapping[int, Mapping[int, float]]


def yuma_consensus(inputs: YumaInputs) -> YumaResult:
    """Run one epoch of Yuma consensus (see the module docstring for the formulas)."""
    n = inputs.n
    permit = [bool(p) for p in inputs.validator_permit]
    units = _stake_units(inputs.stake, permit)
    total_units = sum(units)
    stake = [u / total_units for u in units] if total_units else [0.0] * n
    rows = _weight_rows(inputs.weights, n, permit)
    consensus = _consensus(rows, units, Fraction(inputs.params.kappa), n)

    trust = [0.0] * n
    rank_terms: list[list[float]] = [[] for _ in range(n)]
    stake_terms: dict[int, tuple[list[int], list[float]]] = {}  # S_i·W̄_ij: ΔB unnormalised
    for i, (uids, weights) in rows.items():
        clipped = [
            w if w < c else c
            for w, c in zip(weights, map(consensus.__getitem__, uids), strict=True)
        ]
        trust[i] = math.fsum(clipped)
        if stake[i] > 0:
            terms = [stake[i] * w for w in clipped]
            stake_terms[i] = (uids, terms)
            for j, term in zip(uids, terms, strict=True):
                rank_terms[j].append(term)
    ranks = [math.fsum(terms) for terms in rank_terms]
    incentive = _normalised(ranks)

    bonds = _moving_average_bonds(
        stake_terms, ranks, _previous_bonds(inputs.bonds, n, permit), inputs.params.bond_alpha
    )
    dividends = _normalised(
        [
            math.fsum([b * incentive[j] for j, b in bonds[i].items()]) if i in bonds else 0.0
            for i in range(n)
        ]
    )
    return YumaResult(
        consensus=tuple(consensus),
        ranks=tuple(ranks),
        incentive=tuple(incentive),
        dividends=tuple(dividends),
        validator_trust=tuple(trust),
        bonds=MappingProxyType({i: MappingProxyType(bonds[i]) for i in sorted(bonds)}),
    )


def _consensus(rows: dict[int, _Row], units: list[int], kappa: Fraction, n: int) -> list[float]:
    """Each column's κ-median (module docstring, step 2), with exact stake sums."""
    consensus = [0.0] * n
    total = sum(units)
    if total == 0:
        return consensus
    columns: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    for i, (uids, weights) in rows.items():
        if units[i]:
            for j, w in zip(uids, weights, strict=True):
                columns[j].append((w, units[i]))
    needed = kappa.numerator * total  # voting·denominator >= needed  <=>  voting share >= κ
    for j, votes in enumerate(columns):
        votes.sort(reverse=True)
        voting = 0
        for w, u in votes:
            voting += u
            if voting * kappa.denominator >= needed:
                consensus[j] = w
                break
    return consensus


def _moving_average_bonds(
    stake_terms: dict[int, tuple[list[int], list[float]]],
    ranks: list[float],
    previous: dict[int, dict[int, float]],
    alpha: float,
) -> dict[int, dict[int, float]]:
    """``colnorm(alpha·ΔB + (1-alpha)·colnorm(B_prev))`` in one pass over the entries.

    Column j of ``S_i·W̄_ij`` sums to R_j, so dividing by R_j normalises ΔB; B_prev's columns
    are divided by their sums. Both parts then have columns summing to 1 (or 0), so column j
    of the mix sums to ``alpha·[R_j > 0] + (1-alpha)·[B_prev column j > 0]``.
    """
    n = len(ranks)
    column_terms: list[list[float]] = [[] for _ in range(n)]
    for row in previous.values():
        for j, b in row.items():
            column_terms[j].append(b)
    previous_sums = [math.fsum(terms) for terms in column_terms]
    decay = 1 - alpha
    mix_sums = [
        (alpha if ranks[j] > 0 else 0.0) + (decay if previous_sums[j] > 0 else 0.0)
        for j in range(n)
    ]
    bonds: dict[int, dict[int, float]] = {}
    for i in stake_terms.keys() | previous.keys():
        mixed: dict[int, float] = {}
        if i in stake_terms:
            uids, terms = stake_terms[i]
            mixed = {
                j: alpha * (term / ranks[j])
                for j, term in zip(uids, terms, strict=True)
                if term > 0
            }
        for j, b in previous.get(i, {}).items():
            mixed[j] = mixed.get(j, 0.0) + decay * (b / previous_sums[j])
        # A positive entry implies a positive column sum.
        row = {j: b / mix_sums[j] for j, b in mixed.items() if b > 0}
        if row:
            bonds[i] = row
    return bonds


def _stake_units(stake: Sequence[Weight], permit: list[bool]) -> list[int]:
    """Stake as exact integers on a common scale, 0 for UIDs without a permit."""
    exact = []
    for uid, value in enumerate(stake):
        _check_value(value, f"stake of uid {uid}")
        exact.append(Fraction(value) if permit[uid] else Fraction(0))
    scale = math.lcm(*(x.denominator for x in exact))
    return [x.numerator * (scale // x.denominator) for x in exact]


def _weight_rows(weights: Matrix, n: int, permit: list[bool]) -> dict[int, _Row]:
    """Permitted validators' rows, self-weight dropped, normalised, zeros left out."""
    rows: dict[int, _Row] = {}
    for i, row in weights.items():
        _check_uid(i, n, "weights")
        uids, values = _row_entries(row, n, f"weights of uid {i}", strict=True)
        if not permit[i]:
            continue
        if i in uids:
            own = uids.index(i)
            del uids[own], values[own]
        values = _normalised(values)
        if 0.0 in values:  # underflow of a tiny weight next to a huge one
            uids, values = _positive(uids, values, n)
        if uids:
            rows[i] = (uids, values)
    return rows


def _previous_bonds(bonds: Matrix, n: int, permit: list[bool]) -> dict[int, dict[int, float]]:
    """Bonds of permitted validators, minus any naming a UID the subnet no longer has, scaled
    so the largest is 1: a common factor leaves column ratios alone and keeps sums finite."""
    kept: dict[int, dict[int, float]] = {}
    for i, row in bonds.items():
        _check_uid(i, None, "bonds")
        uids, values = _row_entries(row, n, f"bonds of uid {i}", strict=False)
        if i < n and permit[i] and uids:
            kept[i] = dict(zip(uids, values, strict=True))
    top = max((max(row.values()) for row in kept.values()), default=0.0)
    if top > 1:
        kept = {i: {j: b / top for j, b in row.items()} for i, row in kept.items()}
    return kept


def _row_entries(row: WeightRow, n: int, what: str, strict: bool) -> _Row:
    """A row's positive entries as floats. With ``strict`` a UID outside the subnet is an
    error; without, it is dropped. Rows of plain floats and ints are checked in bulk."""
    limit = n if strict else None
    uids: list[int]
    if isinstance(row, Mapping):
        uids = list(row.keys())
        if not _plain_uids(uids, limit):
            for j in uids:
                _check_uid(j, limit, what)
        values = list(row.values())
    else:
        if strict and len(row) != n:
            raise ValueError(f"{what}: a dense row needs {n} values, got {len(row)}")
        uids = list(range(len(row)))
        values = list(row)
    floats: list[float]
    if _plain_values(values):
        floats = list(map(float, values))
    else:  # find the offending value, or accept numbers the bulk check cannot sum
        floats = [_check_value(v, f"{what} -> uid {j}") for j, v in zip(uids, values, strict=True)]
    if min(floats, default=1.0) > 0 and (strict or max(uids, default=0) < n):
        return uids, floats
    return _positive(uids, floats, n)


def _positive(uids: list[int], values: list[float], n: int) -> _Row:
    """The entries with a positive value and a UID below ``n``."""
    pairs = [(j, x) for j, x in zip(uids, values, strict=True) if x > 0 and j < n]
    return [j for j, _ in pairs], [x for _, x in pairs]


def _plain_uids(uids: list[int], limit: int | None) -> bool:
    """True if every UID is an int within range (a fast, C-level check)."""
    if not uids:
        return True
    if not set(map(type, uids)) <= {int}:
        return False
    return min(uids) >= 0 and (limit is None or max(uids) < limit)


def _plain_values(values: list[Weight]) -> bool:
    """True if every value is a finite non-negative int or float (a fast, C-level check)."""
    if not set(map(type, values)) <= {int, float}:
        return False
    try:
        total = math.fsum(values)  # NaN or inf anywhere makes this NaN or inf (or raise)
    except (OverflowError, ValueError):
        return False
    return math.isfinite(total) and min(values, default=0) >= 0


def _normalised(values: list[float]) -> list[float]:
    """``values / sum(values)``, or all 0 if they sum to 0. Values too large to sum safely are
    scaled down by the largest first (the decision depends on the largest alone, so the
    result still does not depend on the order)."""
    top = max(values, default=0.0)
    if top <= 0:
        return [0.0] * len(values)
    if top > _SAFE_TO_SUM:
        values = [v / top for v in values]
    total = math.fsum(values)
    return [v / total for v in values]


def _check_uid(uid: object, n: int | None, what: str) -> None:
    if not isinstance(uid, int) or uid < 0:
        raise ValueError(f"{what}: uid {uid!r} is not a UID (a non-negative int)")
    if n is not None and uid >= n:
        raise ValueError(f"{what}: uid {uid} is out of range for a subnet of {n} UIDs")


def _check_value(value: object, what: str) -> float:
    """A finite non-negative number as a float; anything else is rejected, naming ``what``."""
    if isinstance(value, float):
        x = value
    elif isinstance(value, int | Fraction):
        try:
            x = float(value)
        except OverflowError:
            x = math.inf if value > 0 else -math.inf
    else:
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    if not 0.0 <= x <= _FLOAT_MAX:  # also false for NaN
        raise ValueError(f"{what} is {value!r}: it must be finite and non-negative")
    return x
