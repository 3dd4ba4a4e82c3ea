"""Monte Carlo of segments on a churning population of miners, under our repair policy.

Event-driven (a heap of failures, returns, detections and rebuilds, never a per-second
step), seeded, so years of simulated time take seconds of CPU. Each scenario places
``segments`` k-of-m segments on ``miners`` miners (one share per miner, one per /24 network
as placement does) and runs the repair loop's real policy:

- a failed miner's shares are found missing after the next challenge round plus
  ``containment_rechecks`` rounds (or ``unseen_after``); a miner back before that passes
  again and nothing is repaired;
- a segment whose health (shares not known missing - k) is below ``repair_threshold`` joins
  the rebuild queue at the next repair run; rebuilds run one after another at the measured
  rebuild rate (shard bytes restored per second) and put the missing shares on new miners;
- a segment is lost when more than m - k of its shares are gone for good at once (it is then
  counted and stored afresh, so the population stays the same size).

Each scenario reports segments lost per segment-year with a 95% interval, the nines, the time
segments spent below the threshold, and repair traffic per stored byte, beside the model's
figures (``validator/durability.py``) for the same inputs. The independent scenarios are where
the model applies; the correlated ones (a /24 going dark, one operator with many hotkeys
leaving) are where it does not, and the report says so.

    python -m bench.durability [--years 2] [--out bench/results/durability.json]
    python -m bench.durability --smoke --out /tmp/durability.json
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.report import command, emit
from validator.durability import DAY, HOUR, YEAR, DurabilityInputs, durability, nines, parse_rate

MIB = 2**20
RETRY_AFTER = 300.0  # the repairer's wait after a segment it could not finish (repair.py)
Z95 = 1.96

FAIL, RETURN, DETECT, REBUILT, OPERATOR_LEAVES, NETWORK_DARK = range(6)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    policy: DurabilityInputs  # k, m, threshold, timings, rebuild rate, failure process
    miners: int = 64
    segments: int = 2000
    shard_bytes: int = 4 * MIB
    years: float = 1.0
    seed: int = 1
    miners_per_network: int = 1  # miners behind one /24
    network_outages_per_year: float = 0.0  # per network: all its miners dark at once
    network_outage_seconds: float = 6 * HOUR
    operator_fraction: float = 0.0  # one operator's share of the hotkeys; it leaves mid-run
    correlated: str = ""  # why the model does not apply ("" where it does)

    @property
    def miner_bytes(self) -> float:
        """Shard bytes a miner holds on average: what the model's rebuild window is from."""
        return self.segments * self.policy.m * self.shard_bytes / self.miners

    @property
    def model_inputs(self) -> DurabilityInputs:
        return replace(self.policy, miner_bytes=self.miner_bytes)


@dataclass
class Outcome:
    segment_years: float = 0.0
    segments_lost: int = 0
    share_losses: int = 0  # shares the validator found missing (each needed a rebuild)
    repairs: int = 0
    repair_bytes: int = 0  # fetched + pushed
    below_threshold_seconds: float = 0.0  # summed over segments
    events: int = 0
    cpu_seconds: float = 0.0
    failures: int = 0


class Simulation:
    """One scenario's state. Shares are numbered ``segment * m + share``."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.p = scenario.policy
        self.rng = random.Random(scenario.seed)
        m, segments = self.p.m, scenario.segments
        self.holder = [-1] * (segments * m)
        self.gone = bytearray(segments * m)  # data gone for good (or given up on)
        self.known = bytearray(segments * m)  # the validator counts it missing
        self.gone_count = [0] * segments
        self.known_count = [0] * segments
        self.queued = bytearray(segments)
        self.below_since = [-1.0] * segments
        self.epoch = [0] * segments  # bumped when a lost segment is stored afresh
        self.held: list[set[int]] = []
        self.up = bytearray()
        self.generation: list[int] = []
        self.network: list[int] = []
        self.operator: set[int] = set()
        self.operator_gone = False
        self.events: list[tuple[float, int, int, Any]] = []
        self.sequence = 0
        self.rebuilder_free_at = 0.0
        self.out = Outcome()
        self.now = 0.0

    # --- miners ---------------------------------------------------------------------------

    def _add_miner(self, network: int) -> int:
        miner = len(self.held)
        self.held.append(set())
        self.up.append(1)
        self.generation.append(0)
        self.network.append(network)
        self._schedule_failure(miner)
        return miner

    def _schedule_failure(self, miner: int) -> None:
        if self.p.failure_rate > 0:
            self._push(self.now + self.rng.expovariate(self.p.failure_rate), FAIL, miner)

    def _push(self, at: float, kind: int, payload: Any) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (at, self.sequence, kind, payload))

    def _detection_delay(self) -> float:
        """Until the challenger gives up: the next round (rounds every challenge_seconds
        from 0), then the rechecks; or unseen_after, if sooner."""
        c = self.p.challenge_seconds
        next_round = math.ceil(self.now / c) * c - self.now
        return min(next_round + self.p.containment_rechecks * c, self.p.unseen_after)

    def _fail(self, miner: int, outage: float | None) -> None:
        """``outage`` None: the miner leaves for good (a newcomer takes its place)."""
        if not self.up[miner]:
            return
        self.out.failures += 1
        self.up[miner] = 0
        self.generation[miner] += 1
        detect_at = self.now + self._detection_delay()
        if outage is None:
            refs = list(self.held[miner])
            self.held[miner] = set()
            for ref in refs:
                self._lose_data(ref)
            self._push(detect_at, DETECT, (miner, -1, refs))
            newcomer = self._add_miner(self.network[miner])
            if miner in self.operator and not self.operator_gone:
                self.operator.add(newcomer)  # the operator registers its hotkey again
        else:
            self._push(self.now + outage, RETURN, (miner, self.generation[miner]))
            self._push(detect_at, DETECT, (miner, self.generation[miner], None))

    def _return(self, miner: int, generation: int) -> None:
        if self.generation[miner] != generation or self.up[miner]:
            return
        self.up[miner] = 1  # whatever it held that was not given up on counts again
        self._schedule_failure(miner)

    def _detect(self, miner: int, generation: int, refs: list[int] | None) -> None:
        if refs is None:  # an outage: its shares are lost only if it is still away
            if self.generation[miner] != generation or self.up[miner]:
                return
            refs = list(self.held[miner])
            self.held[miner] = set()
            for ref in refs:
                self._lose_data(ref)
        for ref in refs:
            if self.holder[ref] == miner and self.gone[ref] and not self.known[ref]:
                self._mark_known(ref)

    # --- segments -------------------------------------------------------------------------

    def _place(self, segment: int, taken: set[int]) -> int:
        """A random live miner holding none of the segment, on a network none of its other
        holders is on (placement's /24 rule)."""
        networks = {self.network[self.holder[r]] for r in self._refs(segment) if r in taken}
        holders = {self.holder[r] for r in self._refs(segment) if r in taken}
        for _ in range(10_000):
            miner = self.rng.randrange(len(self.held))
            if self.up[miner] and miner not in holders and self.network[miner] not in networks:
                return miner
        raise RuntimeError("no live miner on a free network: the population is too small")

    def _refs(self, segment: int) -> range:
        m = self.p.m
        return range(segment * m, segment * m + m)

    def _store(self, segment: int) -> None:
        placed: set[int] = set()
        for ref in self._refs(segment):
            miner = self._place(segment, placed)
            self.holder[ref] = miner
            self.held[miner].add(ref)
            placed.add(ref)

    def _lose_data(self, ref: int) -> None:
        if self.gone[ref]:
            return
        self.gone[ref] = 1
        segment = ref // self.p.m
        self.gone_count[segment] += 1
        if self.gone_count[segment] > self.p.m - self.p.k:
            self._segment_lost(segment)

    def _segment_lost(self, segment: int) -> None:
        self.out.segments_lost += 1
        self._close_below(segment)
        for ref in self._refs(segment):
            holder = self.holder[ref]
            if holder >= 0:
                self.held[holder].discard(ref)
            self.gone[ref] = self.known[ref] = 0
        self.gone_count[segment] = self.known_count[segment] = 0
        self.queued[segment] = 0
        self.epoch[segment] += 1
        self._store(segment)  # the renewal: the population keeps its size

    def _mark_known(self, ref: int) -> None:
        self.known[ref] = 1
        self.out.share_losses += 1
        segment = ref // self.p.m
        self.known_count[segment] += 1
        if self.known_count[segment] >= self.p.trigger:
            if self.below_since[segment] < 0:
                self.below_since[segment] = self.now
            if not self.queued[segment]:
                run = math.ceil(self.now / self.p.repair_seconds) * self.p.repair_seconds
                self._enqueue(segment, run)

    def _enqueue(self, segment: int, at: float) -> None:
        self.queued[segment] = 1
        start = max(at, self.rebuilder_free_at)
        shares = self.known_count[segment]
        done = start + shares * self.s.shard_bytes / self.p.rebuild_bytes_per_second
        self.rebuilder_free_at = done
        self._push(done, REBUILT, (segment, self.epoch[segment]))

    def _rebuilt(self, segment: int, epoch: int) -> None:
        if self.epoch[segment] != epoch:
            return
        self.queued[segment] = 0
        refs = self._refs(segment)
        readable = sum(1 for r in refs if not self.gone[r] and self.up[self.holder[r]])
        if readable < self.p.k:  # a holder is away: the repairer tries again later
            self._enqueue(segment, self.now + RETRY_AFTER)
            return
        missing = [r for r in refs if self.known[r]]
        kept = {r for r in refs if not self.known[r]}
        for ref in missing:
            miner = self._place(segment, kept)
            self.holder[ref] = miner
            self.held[miner].add(ref)
            self.gone[ref] = self.known[ref] = 0
            kept.add(ref)
        self.gone_count[segment] -= len(missing)
        self.known_count[segment] = 0
        self.out.repairs += 1
        self.out.repair_bytes += (self.p.k + len(missing)) * self.s.shard_bytes
        self._close_below(segment)

    def _close_below(self, segment: int) -> None:
        if self.below_since[segment] >= 0:
            self.out.below_threshold_seconds += self.now - self.below_since[segment]
            self.below_since[segment] = -1.0

    # --- the run --------------------------------------------------------------------------

    def run(self) -> Outcome:
        started = time.process_time()
        s = self.s
        for i in range(s.miners):
            self._add_miner(i // s.miners_per_network)
        # One operator's hotkeys, on networks of their own (the /24 rule does not see it).
        self.operator = set(self.rng.sample(range(s.miners), round(s.operator_fraction * s.miners)))
        for segment in range(s.segments):
            self._store(segment)
        end = s.years * YEAR
        if self.operator:
            self._push(end / 2, OPERATOR_LEAVES, None)
        networks = -(-s.miners // s.miners_per_network)
        if s.network_outages_per_year > 0:
            for network in range(networks):
                self._push(
                    self.rng.expovariate(s.network_outages_per_year / YEAR), NETWORK_DARK, network
                )
        while self.events and self.events[0][0] <= end:
            self.now, _, kind, payload = heapq.heappop(self.events)
            self.out.events += 1
            self._handle(kind, payload)
        self.now = end
        for segment in range(s.segments):
            self._close_below(segment)
        self.out.segment_years = s.segments * s.years
        self.out.cpu_seconds = time.process_time() - started
        return self.out

    def _handle(self, kind: int, payload: Any) -> None:
        if kind == FAIL:
            outage = self.p.outage_seconds
            self._fail(payload, None if outage is None else self.rng.expovariate(1 / outage))
        elif kind == RETURN:
            self._return(*payload)
        elif kind == DETECT:
            self._detect(*payload)
        elif kind == REBUILT:
            self._rebuilt(*payload)
        elif kind == OPERATOR_LEAVES:
            self.operator_gone = True
            for miner in sorted(self.operator):
                self._fail(miner, None)
        elif kind == NETWORK_DARK:
            dark = self.rng.expovariate(1 / self.s.network_outage_seconds)
            for miner in range(len(self.held)):
                if self.network[miner] == payload:
                    self._fail(miner, dark)
            rate = self.s.network_outages_per_year / YEAR
            self._push(self.now + self.rng.expovariate(rate), NETWORK_DARK, payload)


def poisson_interval(count: int) -> tuple[float, float]:
    """A 95% interval for a Poisson mean from one count (Wilson-Hilferty; 0 gives [0, 3.7])."""

    def bound(n: float, z: float) -> float:
        return n * (1 - 1 / (9 * n) + z / (3 * math.sqrt(n))) ** 3

    low = 0.0 if count == 0 else bound(count, -Z95)
    return low, bound(count + 1, Z95)


@dataclass(frozen=True, slots=True)
class Comparison:
    scenario: Scenario
    outcome: Outcome
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        s, o = self.scenario, self.outcome
        low, high = poisson_interval(o.segments_lost)
        per_year = o.segments_lost / o.segment_years
        annual = -math.expm1(-per_year)
        stored = s.segments * s.policy.m * s.shard_bytes
        model_rate = self.model["segment_losses_per_year"]
        sim_seconds = s.years * YEAR
        within = low / o.segment_years <= model_rate <= high / o.segment_years
        return {
            "name": s.name,
            "k": s.policy.k,
            "m": s.policy.m,
            "repair_threshold": s.policy.threshold,
            "miners": s.miners,
            "segments": s.segments,
            "years": s.years,
            "seed": s.seed,
            "failures_per_miner_per_day": round(s.policy.failure_rate * DAY, 6),
            "outage_hours": None
            if s.policy.outage_seconds is None
            else s.policy.outage_seconds / HOUR,
            "miner_gib": round(s.miner_bytes / 2**30, 3),
            "correlated": s.correlated,
            "failures": o.failures,
            "events": o.events,
            "cpu_seconds": round(o.cpu_seconds, 2),
            "segment_years": o.segment_years,
            "segments_lost": o.segments_lost,
            "segment_losses_per_year": per_year,
            "segment_losses_per_year_95": [low / o.segment_years, high / o.segment_years],
            "model_segment_losses_per_year": model_rate,
            "segment_loss_per_year": annual,
            "segment_loss_per_year_95": [
                -math.expm1(-low / o.segment_years),
                -math.expm1(-high / o.segment_years),
            ],
            "segment_nines": _finite(nines(annual)),
            "model_segment_loss_per_year": self.model["segment_loss_per_year"],
            "model_segment_nines": _finite(self.model["segment_nines"]),
            "model_within_95": within,
            "fraction_below_threshold": o.below_threshold_seconds / (s.segments * sim_seconds),
            "model_fraction_below_threshold": self.model["fraction_below_threshold"],
            "repair_bytes_per_stored_byte_per_year": o.repair_bytes / stored / s.years,
            "model_repair_bytes_per_stored_byte_per_year": self.model[
                "repair_bytes_per_stored_byte_per_year"
            ],
            "share_losses": o.share_losses,
            "repairs": o.repairs,
        }


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 2)


def simulate(scenario: Scenario) -> Comparison:
    outcome = Simulation(scenario).run()
    return Comparison(scenario, outcome, durability(scenario.model_inputs).to_dict())


def scenarios(years: float, smoke: bool) -> list[Scenario]:
    """Where the model applies (independent failures), measurable and at our defaults, then
    where it does not (correlated)."""
    scale = 0.05 if smoke else 1.0
    segments = 400 if smoke else 2000
    # Where losses happen often enough to count: slow detection (a challenge round an hour),
    # so a window is hours long against a day between a miner's failures.
    stressed = DurabilityInputs(
        k=2,
        m=4,
        failure_rate=parse_rate("20%/day"),
        challenge_seconds=HOUR,
        repair_seconds=600.0,
    )
    defaults = DurabilityInputs(k=4, m=8, failure_rate=parse_rate("5%/day"))
    lazy = replace(stressed, m=5, repair_threshold=1, failure_rate=parse_rate("5%/day"))
    # Outages of 6 h: ~5% of miners away at any time, and at 60%/day ~20%: a repair then
    # often cannot read k shares and waits while more go (the model counts an outage's
    # exposure from the failure for this reason).
    outages = replace(stressed, outage_seconds=6 * HOUR)
    away = replace(stressed, failure_rate=parse_rate("60%/day"), outage_seconds=6 * HOUR)
    return [
        Scenario(
            "independent, 2-of-4, 20%/day, hourly rounds",
            stressed,
            years=years * scale,
            segments=segments,
        ),
        Scenario(
            "independent, 2-of-5 lazy (threshold 1)",
            lazy,
            years=years * scale,
            segments=segments,
            seed=2,
        ),
        Scenario(
            "independent outages (6 h mean), 2-of-4",
            outages,
            years=years * scale,
            segments=segments,
            seed=3,
        ),
        Scenario(
            "outages with ~20% of miners away, 2-of-4",
            away,
            years=years * scale / 4,
            segments=segments,
            seed=7,
        ),
        Scenario(
            "defaults, 4-of-8, 5%/day", defaults, years=years * scale, segments=segments, seed=4
        ),
        Scenario(
            "a /24 going dark (8 miners each, 6 h), 4-of-8",
            defaults,
            years=years * scale,
            segments=segments,
            seed=5,
            miners_per_network=8,
            miners=128,
            network_outages_per_year=12.0,
            correlated="the /24 rule puts at most one share of a segment in a network, so a "
            "dark /24 costs each segment one share; but the rebuild queue takes the whole "
            "network at once, so windows are longer than the model's",
        ),
        Scenario(
            "one operator with 40% of the hotkeys leaves, 4-of-8",
            replace(defaults, failure_rate=parse_rate("1%/day")),
            years=years * scale,
            segments=segments,
            seed=6,
            operator_fraction=0.4,
            correlated="hotkeys of one operator on different /24s look independent to "
            "placement; when it leaves, every segment with more than m - k shares on it is "
            "lost at once",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--years", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/durability.json"))
    parser.add_argument("--smoke", action="store_true", help="a tenth of the simulated time")
    args = parser.parse_args()
    started = time.process_time()
    results = [simulate(s).to_dict() for s in scenarios(args.years, args.smoke)]
    emit(
        {
            "bench": "durability",
            "command": command("bench.durability"),
            "results": results,
            "cpu_seconds": round(time.process_time() - started, 1),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
