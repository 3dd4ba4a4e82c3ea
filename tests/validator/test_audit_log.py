"""The challenge log is tamper-evident: any edit names the first bad entry."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from bittensor_wallet import Keypair

from erasure import MerkleTree, hash_leaf
from validator.audit_log import (
    LogEntry,
    append,
    check_proof,
    proof_digest,
    verify_entries,
    verify_log,
)
from validator.challenges import derive_indices

VALIDATOR = Keypair.create_from_uri("//LogValidator")
LEAF = 1024
DATA = bytes(range(256)) * 40  # 10 leaves
TREE = MerkleTree.build(DATA, LEAF)
ROOT = TREE.root.hex()


def merkle_entry(nonce: bytes, *, data: bytes = DATA, verdict: str = "pass") -> LogEntry:
    """A real challenge of TREE, answered from ``data`` (tamper it for a wrong answer)."""
    indices = derive_indices(nonce, ROOT, TREE.leaf_count, 3)
    hashes = [hash_leaf(data[i * LEAF : (i + 1) * LEAF]) for i in indices]
    proof = TREE.prove(indices).to_bytes()
    return LogEntry(
        seq=0, validator="", miner="miner", shard_id=ROOT, kind="merkle", nonce=nonce.hex(),
        indices=indices, root=ROOT, issued_at=1000.0, answered_at=1000.1, latency_ms=100.0,
        verdict=verdict, reason="", proof_digest=proof_digest(hashes, proof),
        leaf_count=TREE.leaf_count, leaf_hashes=tuple(h.hex() for h in hashes), proof=proof.hex(),
        size=len(data),
    )  # fmt: skip


def entry(i: int) -> LogEntry:
    if i % 4 == 0:
        return LogEntry(
            seq=0, validator="", miner=f"miner{i % 3}", shard_id=ROOT, kind="merkle",
            nonce=f"{i:032x}", indices=(), root=ROOT, issued_at=1000.0 + i, answered_at=None,
            latency_ms=None, verdict="timeout", reason="no answer", proof_digest="",
        )  # fmt: skip
    return merkle_entry(i.to_bytes(16, "big"))


def build(n: int) -> list[LogEntry]:
    log: list[LogEntry] = []
    for i in range(n):
        log.append(append(log, entry(i), VALIDATOR))
    return log


def test_a_clean_log_verifies_and_round_trips_as_json_lines() -> None:
    log = build(20)
    assert verify_log(log) is None
    assert verify_log([LogEntry.from_json(e.to_json()) for e in log]) is None


def test_the_signed_body_is_the_same_bytes_as_version_1_wrote() -> None:
    """body() builds its dict directly (faster than dataclasses.asdict): entries signed
    before must still verify, so the bytes must not change."""
    for e in build(8):
        fields = asdict(e)
        del fields["signature"]
        assert e.body() == json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize("victim", [0, 7, 19])
def test_editing_any_field_names_that_entry(victim: int) -> None:
    log = build(20)
    log[victim] = replace(log[victim], verdict="pass" if log[victim].verdict != "pass" else "wrong")
    problem = verify_log(log)
    assert problem is not None
    assert problem.seq == victim
    assert "signature" in problem.reason


def test_flipping_one_byte_of_the_export_names_the_entry() -> None:
    lines = [e.to_json() for e in build(10)]
    line = lines[4]
    at = line.index('"issued_at":') + len('"issued_at":')
    lines[4] = line[:at] + ("2" if line[at] != "2" else "3") + line[at + 1 :]
    problem = verify_log([LogEntry.from_json(x) for x in lines])
    assert problem is not None
    assert problem.seq == 4


def test_removing_or_reordering_entries_breaks_the_chain() -> None:
    log = build(10)
    dropped = log[:3] + log[4:]
    problem = verify_log(dropped)
    assert (problem.seq if problem else None) == 3
    swapped = [*log[:5], log[6], log[5], *log[7:]]
    problem = verify_log(swapped)
    assert (problem.seq if problem else None) == 5


def test_a_log_resigned_by_someone_else_is_refused() -> None:
    log = build(3)
    forger = Keypair.create_from_uri("//Forger")
    forged = replace(log[1], validator=forger.ss58_address)
    forged = replace(forged, signature="0x" + forger.sign(forged.body()).hex())
    log[1] = forged
    problem = verify_log(log)
    assert problem is not None
    assert (problem.seq, problem.reason.startswith("signed by")) == (1, True)
    assert verify_log(build(3), validator=forger.ss58_address) is not None


def test_proofs_are_rechecked_from_leaf_hashes_alone() -> None:
    good = merkle_entry(b"\x01" * 16)
    assert check_proof(good) is None
    corrupt = bytearray(DATA)
    for i in range(0, len(corrupt), LEAF):
        corrupt[i] ^= 1  # every leaf flipped: whatever is challenged is wrong
    wrong = merkle_entry(b"\x01" * 16, data=bytes(corrupt), verdict="wrong")
    assert check_proof(wrong) is None
    # A verdict that does not follow from the recorded proof is named, either way round.
    assert "proof fails" in (check_proof(replace(wrong, verdict="pass")) or "")
    assert "verifies" in (check_proof(replace(good, verdict="wrong")) or "")
    # Indices the nonce does not derive: the validator chose them, not chance.
    assert "nonce" in (check_proof(replace(good, nonce=("02" * 16))) or "")
    log = [append([], wrong, VALIDATOR)]
    log.append(append(log, replace(good, verdict="wrong"), VALIDATOR))
    problem = verify_log(log)
    assert problem is not None
    assert problem.seq == 1


def run_audit(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "subnet", "audit", "verify", str(path), "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_audit_verify_cli_names_the_tampered_entry(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    lines = [e.to_json() for e in build(6)]
    path.write_text("\n".join(lines) + "\n")
    clean = run_audit(path)
    assert (clean.returncode, json.loads(clean.stdout)["ok"]) == (0, True)
    lines[3] = (
        lines[3]
        .replace('"verdict":"pass"', '"verdict":"wrong"')
        .replace('"verdict":"timeout"', '"verdict":"pass"')
    )
    path.write_text("\n".join(lines) + "\n")
    tampered = run_audit(path)
    assert tampered.returncode == 1
    assert json.loads(tampered.stdout)["first_bad"]["seq"] == 3
    path.write_text("not json\n")
    broken = run_audit(path)
    assert broken.returncode == 1
    assert "not a log entry" in broken.stderr


def test_a_filtered_export_verifies_each_entry_and_says_it_cannot_prove_completeness() -> None:
    log = build(8)
    one_miner = [log[1], log[2], log[5], log[7]]  # what `audit log --miner` might export
    check = verify_entries(one_miner)
    assert (check.problem, check.complete, check.gaps) == (None, False, 2)
    whole = verify_entries(log)
    assert (whole.problem, whole.complete, whole.gaps) == (None, True, 0)
    tail = verify_entries(log[3:6])  # adjacent entries: their links are checked
    assert (tail.problem, tail.complete) == (None, False)
    forged = [*log[3:5], dataclasses.replace(log[5], prev_hash=log[3].entry_hash)]
    problem = verify_entries(forged).problem
    assert problem is not None
    assert problem.seq == 5
    edited = dataclasses.replace(one_miner[1], verdict="wrong")
    problem = verify_entries([one_miner[0], edited]).problem
    assert problem is not None
    assert problem.reason == "signature does not match the entry"


def test_audit_verify_cli_on_a_filtered_export(tmp_path: Path) -> None:
    path = tmp_path / "miner1.jsonl"
    log = build(8)
    path.write_text("".join(log[i].to_json() + "\n" for i in (1, 2, 5, 7)))
    result = subprocess.run(
        [sys.executable, "-m", "subnet", "audit", "verify", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "filtered export, which cannot prove that no entry is missing" in result.stdout
