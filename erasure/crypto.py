"""Per-object AEAD encryption of segments: AES-256-GCM with a random key per object.

AES-GCM over ChaCha20-Poly1305 by measurement: 2.6 GB/s against 1.7 GB/s to encrypt on
these machines (AES-NI). Each segment is sealed on its own, so a reader can decrypt any
segment without the others (Range reads). The nonce is the segment index, which is unique
under a key that is used for one object only. The associated data binds the index and
whether this is the final segment, so segments cannot be reordered, and an object cannot be
truncated at a segment boundary, without the tag failing.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from erasure.errors import DecryptionError, InvalidParamsError

KEY_SIZE = 32
TAG_SIZE = 16
_AAD_PREFIX = b"storage-subnet segment v1"

Buffer = bytes | bytearray | memoryview


def new_key() -> bytes:
    """A fresh random object key. Never encrypt two different objects under one key."""
    return os.urandom(KEY_SIZE)


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def _aad(index: int, is_last: bool) -> bytes:
    return _AAD_PREFIX + index.to_bytes(8, "big") + (b"\x01" if is_last else b"\x00")


def _cipher(key: bytes) -> AESGCM:
    if len(key) != KEY_SIZE:
        raise InvalidParamsError(f"an object key is {KEY_SIZE} bytes, got {len(key)}")
    return AESGCM(key)


def encrypt_segment(key: bytes, index: int, is_last: bool, plaintext: Buffer) -> bytes:
    """Seal one segment: ``len(plaintext) + TAG_SIZE`` bytes out."""
    return _cipher(key).encrypt(_nonce(index), plaintext, _aad(index, is_last))


def encrypt_segment_into(
    key: bytes, index: int, is_last: bool, plaintext: Buffer, out: bytearray | memoryview
) -> None:
    """:func:`encrypt_segment` into ``out`` (exactly ``len(plaintext) + TAG_SIZE`` bytes):
    a caller that only hashes the ciphertext reuses one buffer instead of allocating."""
    _cipher(key).encrypt_into(_nonce(index), plaintext, _aad(index, is_last), out)


def decrypt_segment(key: bytes, index: int, is_last: bool, ciphertext: Buffer) -> bytes:
    try:
        return _cipher(key).decrypt(_nonce(index), ciphertext, _aad(index, is_last))
    except InvalidTag:
        raise _failed(index) from None


def decrypt_segment_into(
    key: bytes, index: int, is_last: bool, ciphertext: Buffer, out: bytearray | memoryview
) -> None:
    """:func:`decrypt_segment` into ``out`` (exactly ``len(ciphertext) - TAG_SIZE`` bytes): a
    reader of many segments reuses one buffer instead of faulting in a fresh one for each.
    When the tag fails, ``out`` holds unauthenticated bytes: the caller must not use them."""
    try:
        _cipher(key).decrypt_into(_nonce(index), ciphertext, _aad(index, is_last), out)
    except InvalidTag:
        raise _failed(index) from None


def _failed(index: int) -> DecryptionError:
    return DecryptionError(
        f"segment {index} failed authentication: wrong key, or the data was altered"
    )
