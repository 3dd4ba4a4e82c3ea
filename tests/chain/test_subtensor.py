"""What subtensor receives from :class:`SubtensorChain`: each extrinsic's pallet, function,
params and signer, as recorded by the in-memory subtensor behind the real SDK.

The contract suite (``test_chain_contract.py``) shows the adapter behaves like the embedded
chain; these tests pin what only subtensor sees: u16 weights as the pallet expects them, UIDs
that are the hotkeys' UIDs, the version key, the rate limit honoured before anything is
signed, the timelocked commit when commit-reveal is on, and a burned registration that only
happens once confirmed, signed and paid by the coldkey.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bittensor_wallet import Wallet

from chain.client import ChainRequestError
from chain.emission import RAO_PER_TAO
from chain.subtensor import RegistrationQuote, SubtensorChain
from protocol.wallet import create_wallet
from tests.chain.fake_subtensor import U16_MAX, FakeSubtensor


@pytest.fixture
def wallets(tmp_path: Path) -> Path:
    root = tmp_path / "wallets"
    for name in ("validator", "miner0", "miner1", "miner2", "poor"):
        create_wallet(name, "default", root)
    return root


def coldkey(wallets: Path, name: str) -> str:
    return Wallet(name=name, path=str(wallets)).get_coldkeypub().ss58_address


def chain(
    fake: FakeSubtensor, wallets: Path, name: str, *, confirm: bool | None = True
) -> SubtensorChain:
    return SubtensorChain(
        "local",
        fake.netuid,
        wallet_name=name,
        wallet_hotkey="default",
        wallet_path=wallets,
        confirm=None if confirm is None else (lambda _quote: confirm),
        substrate=fake,
    )


@pytest.fixture
def fake(wallets: Path) -> FakeSubtensor:
    fake = FakeSubtensor(version_key=7, weights_rate_limit=100, block_seconds=12.0)
    for name in ("validator", "miner0", "miner1", "miner2"):
        fake.balances[coldkey(wallets, name)] = 2 * RAO_PER_TAO
    return fake


async def subnet(fake: FakeSubtensor, wallets: Path) -> tuple[SubtensorChain, dict[str, int]]:
    """A validator with stake and three miners, all registered through the adapter."""
    validator = chain(fake, wallets, "validator")
    fake.stake_of[validator.hotkey] = 1000 * RAO_PER_TAO
    uids = {"validator": await validator.register()}
    for name in ("miner0", "miner1", "miner2"):
        uids[name] = await chain(fake, wallets, name).register()
    return validator, uids


async def test_weights_reach_subtensor_as_u16_for_the_hotkeys_uids(
    fake: FakeSubtensor, wallets: Path
) -> None:
    validator, uids = await subnet(fake, wallets)
    graph = await validator.metagraph()
    by_hotkey = {n.hotkey: n.uid for n in graph.neurons}
    miners = {name: chain(fake, wallets, name).hotkey for name in ("miner0", "miner1", "miner2")}
    # What ChainSync sends: the metagraph's UIDs for the hotkeys, normalised floats.
    chosen = {miners["miner0"]: 0.2, miners["miner1"]: 0.0, miners["miner2"]: 0.8}
    block = await validator.set_weights(
        [by_hotkey[h] for h in chosen], list(chosen.values()), graph.version_key
    )

    [sent] = fake.calls("set_mechanism_weights")
    assert (sent.pallet, sent.signer, sent.block, sent.success) == (
        "SubtensorModule",
        validator.hotkey,
        block,
        True,
    )
    assert sent.params["netuid"] == fake.netuid
    assert sent.params["mecid"] == 0
    assert sent.params["version_key"] == 7 == graph.version_key
    # Zeros are dropped; the largest weight is u16::MAX, as the pallet stores weights.
    assert sent.params["dests"] == [uids["miner0"], uids["miner2"]]
    assert sent.params["weights"] == [round(0.2 / 0.8 * U16_MAX), U16_MAX]
    assert all(isinstance(w, int) and 0 < w <= U16_MAX for w in sent.params["weights"])
    assert fake.weights[uids["validator"]] == list(
        zip(sent.params["dests"], sent.params["weights"], strict=True)
    )


async def test_weights_are_clipped_to_the_subnets_max_weight_limit(
    fake: FakeSubtensor, wallets: Path
) -> None:
    validator, uids = await subnet(fake, wallets)
    fake.max_weight_limit = U16_MAX // 2  # no miner may hold more than half of the weight
    miners = [uids["miner0"], uids["miner1"], uids["miner2"]]
    await validator.set_weights(miners, [0.9, 0.05, 0.05], 7)
    [sent] = fake.calls("set_mechanism_weights")
    assert sent.success  # the pallet's MaxWeightExceeded check passed
    weights = sent.params["weights"]
    assert max(weights) == U16_MAX
    assert max(weights) / sum(weights) <= fake.max_weight_limit / U16_MAX
    assert weights[1] == weights[2] < weights[0]  # the order of the miners is kept


async def test_the_rate_limit_is_honoured_before_signing_and_says_when(
    fake: FakeSubtensor, wallets: Path
) -> None:
    validator, uids = await subnet(fake, wallets)
    first = await validator.set_weights([uids["miner0"]], [1.0], 7)
    fake.advance(40)
    submitted = len(fake.extrinsics)
    refused = await _refusal(validator.set_weights([uids["miner0"]], [1.0], 7))
    assert refused.code == "rate_limited"
    assert len(fake.extrinsics) == submitted  # refused before anything was signed or paid
    # The next allowed block is first + 100; 60 blocks of 12 s away.
    assert refused.retry_after == pytest.approx((first + 100 - fake.block) * 12.0)
    fake.advance(60)
    assert await validator.set_weights([uids["miner0"]], [1.0], 7) == first + 101


async def test_a_chain_refusal_keeps_the_pallets_reason(fake: FakeSubtensor, wallets: Path) -> None:
    validator, uids = await subnet(fake, wallets)
    stale = await _refusal(validator.set_weights([uids["miner0"]], [1.0], 6))
    assert "IncorrectWeightVersionKey" in stale.message
    [failed] = fake.calls("set_mechanism_weights")
    assert (failed.success, failed.error) == (False, "IncorrectWeightVersionKey")


async def test_commit_reveal_sends_a_timelocked_commit_and_no_plain_weights(
    fake: FakeSubtensor, wallets: Path
) -> None:
    validator, uids = await subnet(fake, wallets)
    fake.commit_reveal = True
    block = await validator.set_weights([uids["miner0"], uids["miner1"]], [0.5, 0.5], 7)
    assert fake.calls("set_mechanism_weights") == []
    [commit] = fake.calls("commit_timelocked_mechanism_weights")
    assert (commit.signer, commit.block, commit.success) == (validator.hotkey, block, True)
    assert commit.params["netuid"] == fake.netuid
    assert commit.params["reveal_round"] > 0  # the drand round the chain reveals it at
    assert len(commit.params["commit"]) > 0
    # The same rate limit holds for commits: the chain reveals, we never send a reveal.
    refused = await _refusal(validator.set_weights([uids["miner0"]], [1.0], 7))
    assert refused.code == "rate_limited"
    assert fake.calls("reveal_weights") == []


async def test_registration_needs_a_yes_to_the_cost_and_the_coldkey_pays(
    fake: FakeSubtensor, wallets: Path
) -> None:
    quotes: list[RegistrationQuote] = []

    def decline(quote: RegistrationQuote) -> bool:
        quotes.append(quote)
        return False

    miner = chain(fake, wallets, "miner0")
    miner.confirm = decline
    refused = await _refusal(miner.register())
    assert refused.code == "registration_not_confirmed"
    assert "0.5" in refused.message and "--yes" in refused.message
    assert fake.extrinsics == []  # nothing signed, nothing burned
    [quote] = quotes
    assert (quote.netuid, quote.hotkey, quote.coldkey) == (
        fake.netuid,
        miner.hotkey,
        coldkey(wallets, "miner0"),
    )
    assert quote.cost_rao == fake.burn
    assert "0.5" in quote.describe()

    unattended = chain(fake, wallets, "miner0", confirm=None)  # no terminal, no --yes
    assert (await _refusal(unattended.register())).code == "registration_not_confirmed"

    agreed = chain(fake, wallets, "miner0")
    uid = await agreed.register()
    [registration] = fake.calls("burned_register")
    assert registration.params == {"netuid": fake.netuid, "hotkey": agreed.hotkey}
    assert registration.signer == coldkey(wallets, "miner0")  # the coldkey signs and pays
    assert registration.shielded  # the SDK carries it through the MEV shield
    assert fake.balances[coldkey(wallets, "miner0")] == 2 * RAO_PER_TAO - fake.burn
    assert await agreed.register() == uid  # registered: no second burn
    assert len(fake.calls("burned_register")) == 1


async def test_a_coldkey_without_the_cost_is_refused(fake: FakeSubtensor, wallets: Path) -> None:
    refused = await _refusal(chain(fake, wallets, "poor").register())
    assert (refused.status, refused.code) == (402, "insufficient_balance")
    assert fake.uid(chain(fake, wallets, "poor").hotkey) is None


async def test_an_axon_is_served_by_the_hotkey_as_an_ip(fake: FakeSubtensor, wallets: Path) -> None:
    await subnet(fake, wallets)
    miner = chain(fake, wallets, "miner1")
    await miner.serve_axon("203.0.113.7", 8091)
    [served] = fake.calls("serve_axon")
    assert served.signer == miner.hotkey
    assert served.params["ip"] == int.from_bytes(bytes([203, 0, 113, 7]), "big")
    assert (served.params["port"], served.params["ip_type"]) == (8091, 4)
    refused = await _refusal(miner.serve_axon("miner.example.org", 8091))
    assert refused.code == "bad_axon"


async def test_an_unregistered_hotkey_cannot_set_weights(
    fake: FakeSubtensor, wallets: Path
) -> None:
    validator = chain(fake, wallets, "validator")
    refused = await _refusal(validator.set_weights([0], [1.0], 7))
    assert (refused.status, refused.code) == (403, "not_registered")
    assert fake.extrinsics == []


async def _refusal(call: object) -> ChainRequestError:
    with pytest.raises(ChainRequestError) as info:
        await call  # type: ignore[misc]
    return info.value


def test_the_sdk_loads_only_for_network() -> None:
    """``subnet --help``, the services' modules and the embedded chain do not import it."""
    code = (
        "import sys\n"
        "import subnet.cli, subnet.miner_cmd, subnet.validator_cmd\n"
        "import storage_miner.app, storage_miner.runner, validator.app, validator.runner\n"
        "import chain.app, chain.client\n"
        "from click.testing import CliRunner\n"
        "assert CliRunner().invoke(subnet.cli.main, ['miner', 'run', '--help']).exit_code == 0\n"
        "assert 'bittensor' not in sys.modules, 'bittensor was imported'\n"
        "import chain.subtensor\n"
        "assert 'bittensor' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
