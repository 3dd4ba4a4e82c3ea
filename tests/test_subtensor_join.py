"""``subnet miner|validator run --network`` registers before serving, and only if the cost
was agreed to: on a terminal, or with ``--yes``. Over the real SDK and the in-memory
subtensor (``tests/chain/fake_subtensor.py``)."""

from __future__ import annotations

import io
from pathlib import Path

import click
import pytest
from bittensor_wallet import Wallet

from chain.emission import RAO_PER_TAO
from protocol.wallet import create_wallet
from subnet.subtensor_join import register_before_start
from tests.chain.fake_subtensor import FakeSubtensor


@pytest.fixture
def fake(tmp_path: Path) -> FakeSubtensor:
    create_wallet("miner", "default", tmp_path)
    coldkey = Wallet(name="miner", path=str(tmp_path)).get_coldkeypub().ss58_address
    fake = FakeSubtensor()
    fake.balances[coldkey] = RAO_PER_TAO
    return fake


def join(fake: FakeSubtensor, tmp_path: Path, *, yes: bool, interactive: bool) -> int | None:
    return register_before_start(
        "test",
        fake.netuid,
        ("miner", "default", tmp_path),
        yes=yes,
        interactive=interactive,
        substrate=fake,
    )


def test_without_a_terminal_or_yes_the_start_fails_with_the_cost(
    fake: FakeSubtensor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(click.ClickException, match=r"costs τ0\.5.*--yes"):
        join(fake, tmp_path, yes=False, interactive=False)
    assert "Cost: τ0.500000000" in capsys.readouterr().err
    assert fake.calls("burned_register") == []


def test_a_no_on_the_terminal_registers_nothing_and_a_yes_registers(
    fake: FakeSubtensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    with pytest.raises(click.ClickException, match="not registered"):
        join(fake, tmp_path, yes=False, interactive=True)
    assert fake.calls("burned_register") == []
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert join(fake, tmp_path, yes=False, interactive=True) == 0
    assert len(fake.calls("burned_register")) == 1
    # Registered: the next start asks nothing and burns nothing.
    assert join(fake, tmp_path, yes=False, interactive=False) == 0
    assert len(fake.calls("burned_register")) == 1


def test_yes_registers_without_asking(fake: FakeSubtensor, tmp_path: Path) -> None:
    assert join(fake, tmp_path, yes=True, interactive=False) == 0
    [registration] = fake.calls("burned_register")
    assert registration.success
