from __future__ import annotations

import pytest
from bittensor_wallet import Keypair


@pytest.fixture(scope="session")
def alice() -> Keypair:
    """The client in most tests."""
    return Keypair.create_from_uri("//Alice")


@pytest.fixture(scope="session")
def bob() -> Keypair:
    """The server in most tests."""
    return Keypair.create_from_uri("//Bob")


@pytest.fixture(scope="session")
def mallory() -> Keypair:
    """A fresh random key that nobody has allowed."""
    return Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
