"""What miner, validator and chain share about talking to each other.

- :mod:`protocol.epistula`: Epistula v2 signed requests (sr25519 hotkeys): signing headers,
  verifying them, the replay cache and every rejection reason. Pure: no I/O, no clock.
- :mod:`protocol.http`: the services' aiohttp layer: one error middleware that maps every
  error to an HTTP answer, and one middleware that requires signatures.
- :mod:`protocol.signing`: the client side, a session whose requests are signed; apart, so a
  client imports none of the server.
- :mod:`protocol.wallet`: hotkeys in the standard ``~/.bittensor/wallets`` layout.

This package imports nothing of the services (``erasure``, ``storage_miner``, ``validator``,
``chain``): they depend on it, never the other way round.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from protocol.epistula import (
        ALLOW_ANY,
        DEFAULT_MAX_REMEMBERED,
        DEFAULT_WINDOW_MS,
        HEADER_CONTENT_HASH,
        HEADER_SIGNATURE,
        HEADER_SIGNED_BY,
        HEADER_SIGNED_FOR,
        HEADER_TIMESTAMP,
        HEADER_UUID,
        HEADER_VERSION,
        AllowAnyHotkey,
        AnyOf,
        BadSignature,
        BodyMismatch,
        EpistulaError,
        EpistulaVerifier,
        FutureTimestamp,
        HotkeyPolicy,
        MalformedHeader,
        MissingHeader,
        ReplayCacheFull,
        ReplayedRequest,
        StaleTimestamp,
        StaticAllowlist,
        UnexpectedContentHash,
        UnknownHotkey,
        UnsupportedVersion,
        VerifiedRequest,
        WrongRecipient,
        body_sha256_hex,
        sign_headers,
    )
    from protocol.http import (
        DEFAULT_PUBLIC_PATHS,
        VERIFIED,
        ApiError,
        BadRequest,
        Conflict,
        Forbidden,
        InsufficientStorage,
        NotFound,
        PayloadTooLarge,
        epistula_middleware,
        error_middleware,
        streamed_body,
        verified,
    )
    from protocol.signing import SigningClient, wall_clock_ms
    from protocol.wallet import (
        DEFAULT_WALLET_PATH,
        HotkeyInfo,
        WalletError,
        create_wallet,
        hotkey_file,
        hotkey_info,
        load_hotkey,
    )

__all__ = [
    "ALLOW_ANY",
    "DEFAULT_MAX_REMEMBERED",
    "DEFAULT_PUBLIC_PATHS",
    "DEFAULT_WALLET_PATH",
    "DEFAULT_WINDOW_MS",
    "HEADER_CONTENT_HASH",
    "HEADER_SIGNATURE",
    "HEADER_SIGNED_BY",
    "HEADER_SIGNED_FOR",
    "HEADER_TIMESTAMP",
    "HEADER_UUID",
    "HEADER_VERSION",
    "VERIFIED",
    "AllowAnyHotkey",
    "AnyOf",
    "ApiError",
    "BadRequest",
    "BadSignature",
    "BodyMismatch",
    "Conflict",
    "EpistulaError",
    "EpistulaVerifier",
    "Forbidden",
    "FutureTimestamp",
    "HotkeyInfo",
    "HotkeyPolicy",
    "InsufficientStorage",
    "MalformedHeader",
    "MissingHeader",
    "NotFound",
    "PayloadTooLarge",
    "ReplayCacheFull",
    "ReplayedRequest",
    "SigningClient",
    "StaleTimestamp",
    "StaticAllowlist",
    "UnexpectedContentHash",
    "UnknownHotkey",
    "UnsupportedVersion",
    "VerifiedRequest",
    "WalletError",
    "WrongRecipient",
    "body_sha256_hex",
    "create_wallet",
    "epistula_middleware",
    "error_middleware",
    "hotkey_file",
    "hotkey_info",
    "load_hotkey",
    "sign_headers",
    "streamed_body",
    "verified",
    "wall_clock_ms",
]

# Looked for in this order: a name is imported from its module on first use, so importing
# one submodule (the CLI needs protocol.wallet and protocol.signing) does not import them all,
# aiohttp's server and the metrics with protocol.http.
_MODULES = ("protocol.epistula", "protocol.signing", "protocol.wallet", "protocol.http")


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module_name in _MODULES:
            module = importlib.import_module(module_name)
            if hasattr(module, name):
                value = getattr(module, name)
                globals()[name] = value
                return value
    raise AttributeError(f"module 'protocol' has no attribute {name!r}")
