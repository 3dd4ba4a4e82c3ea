"""Genesis files: TAO or rao amounts, exact; bad files name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chain.emission import RAO_PER_TAO
from chain.genesis import Genesis, GenesisError, load_genesis, write_genesis


def test_toml_amounts_in_tao_and_rao_are_exact(tmp_path: Path) -> None:
    path = tmp_path / "genesis.toml"
    path.write_text(
        'owner = "own"\nissuance_tao = "10499999.5"\ntempo = 10\nblock_interval = 0.1\n'
        '[stake]\nv1 = "0.000000001"\nv2 = 1000\n[stake_rao]\nv3 = 7\n'
    )
    genesis = load_genesis(path)
    assert genesis.issuance == 10_499_999 * RAO_PER_TAO + RAO_PER_TAO // 2
    assert dict(genesis.stakes) == {"v1": 1, "v2": 1000 * RAO_PER_TAO, "v3": 7}
    assert (genesis.owner_hotkey, genesis.tempo, genesis.block_interval) == ("own", 10, 0.1)


def test_written_json_reads_back(tmp_path: Path) -> None:
    genesis = Genesis("own", stakes={"v": 5}, issuance=3, tempo=4, block_interval=0.5)
    write_genesis(genesis, tmp_path / "g.json")
    assert load_genesis(tmp_path / "g.json") == genesis


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"stake": {"v": 1}}, "owner"),
        ({"owner": "o", "stake": {"v": "0.0000000001"}}, "stake.v"),
        ({"owner": "o", "stake": {"v": "lots"}}, "stake.v"),
        ({"owner": "o", "tempo": 0}, "tempo"),
        ({"owner": "o", "colour": "blue"}, "colour"),
        ({"owner": "o", "issuance_rao": 22_000_000 * RAO_PER_TAO}, "issuance"),
    ],
)
def test_bad_genesis_names_the_problem(
    tmp_path: Path, raw: dict[str, object], fragment: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(GenesisError, match=fragment):
        load_genesis(path)
