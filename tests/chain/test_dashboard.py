"""The chain's dashboard on loopback: its figures are what /v1/block, /v1/balances and
/v1/metagraph say; the earnings estimator reproduces the ledger to the rao."""

from __future__ import annotations

from bittensor_wallet import Keypair

from chain.earnings import epoch_credit, next_halving
from chain.emission import EmissionSchedule
from chain.service import ChainService
from tests.chain.test_api import (  # noqa: F401
    Client,
    chain,
    chain_client,
    client,
    keys,
    service,
    setup_subnet,
)
from tests.dashboard.figures import figures

TEMPO = 10


async def test_page_matches_the_chain_and_the_estimate_matches_the_ledger(
    client: Client,  # noqa: F811
    service: ChainService,  # noqa: F811
    keys: dict[str, Keypair],  # noqa: F811
) -> None:
    clients = await setup_subnet(client, keys)
    graph = await clients["alice"].metagraph()
    miners = [graph.by_hotkey(keys[m].ss58_address) for m in ("miner1", "miner2")]
    uids = [m.uid for m in miners if m is not None]
    for name in ("alice", "bob"):
        await clients[name].set_weights(uids, [0.25, 0.75], 3)
    await service.advance(2 * TEMPO + 3)

    page = await client.get("/")
    assert page.status == 200
    # timed, not judged: speed lives in bench.dashboard
    assert float(page.headers["X-Render-Ms"]) >= 0
    shown = figures(await page.text())
    block = await (await client.get("/v1/block")).json()
    for key in ("block", "tempo", "issuance", "era", "block_emission"):
        assert shown[key] == str(block[key]), key
    halving = next_halving(EmissionSchedule(), block["issuance"], block["block"], TEMPO)
    assert shown["halving_block"] == str(halving.block)
    graph = await clients["alice"].metagraph()
    for neuron in graph.neurons:
        assert float(shown[f"incentive_{neuron.uid}"]) == neuron.incentive
    balances = await (await client.get("/v1/balances")).json()
    era = sum(b["eras"].get("0", 0) for b in balances["balances"])
    assert shown["era_0"] == str(era)

    # The estimator, given the last epoch's start and the metagraph's incentive, gives the
    # ledger's incentive credit for that epoch to the rao.
    epochs = (await (await client.get("/v1/epochs", params={"limit": 1})).json())["epochs"]
    incentive = [n.incentive for n in graph.neurons]
    for uid, hotkey in ((uids[0], keys["miner1"]), (uids[1], keys["miner2"])):
        ledger = await (
            await client.get("/v1/ledger", params={"epoch": 2, "hotkey": hotkey.ss58_address})
        ).json()
        model = epoch_credit(EmissionSchedule(), epochs[0]["start_issuance"], TEMPO, incentive, uid)
        assert sum(p.credit for p in model) == sum(c["incentive"] for c in ledger["credits"]) > 0
