"""Which chain a miner or validator joins: the embedded chain (``chain_url``) or subtensor
(``network`` and ``netuid``). Checked by the services' settings; imports nothing, so reading
settings never loads the SDK.
"""

from __future__ import annotations

# The network names the bittensor SDK knows that operators use; any ws:// or wss:// URL works
# too (a subtensor localnet, a private node). "local" is ws://127.0.0.1:9944 unless the SDK's
# $BT_CHAIN_ENDPOINT says otherwise.
NETWORK_NAMES = ("finney", "test", "local")


def chain_choice_error(chain_url: str, network: str, netuid: int | None) -> str | None:
    """Why this choice of chain is not usable, or None when it is.

    At most one of ``chain_url`` (the embedded chain) and ``network`` (subtensor) is given;
    ``network`` needs ``netuid`` and ``netuid`` means nothing without ``network``. Neither
    runs without a chain (static miners and validators, as in tests).
    """
    if chain_url and network:
        return (
            "give either --chain-url (the embedded chain) or --network with --netuid "
            f"(subtensor), not both: got chain_url={chain_url!r} and network={network!r}"
        )
    if network:
        if network not in NETWORK_NAMES and not network.startswith(("ws://", "wss://")):
            return (
                f"network {network!r} is not one of {', '.join(NETWORK_NAMES)} "
                "nor a ws:// or wss:// URL"
            )
        if netuid is None:
            return f"--network {network} needs --netuid: the subnet to join"
        if not 0 < netuid < 65536:
            return f"netuid {netuid} is not a subnet (1..65535; 0 is the root network)"
    elif netuid is not None:
        return f"--netuid {netuid} needs --network (finney, test, local or a ws:// URL)"
    return None
