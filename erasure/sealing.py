"""Sealing a whole object on the client, and opening it again: streams of sealed segments.

A client that does not trust the validator with its data seals each segment itself, exactly
as :class:`~erasure.objects.ObjectEncoder` would (:func:`~erasure.crypto.encrypt_segment`:
AES-256-GCM, nonce = segment index, the index and a last-segment flag bound in), and sends
the concatenated ciphertext. The encoder then codes that stream with ``presealed=True``: it
cuts it at ``segment_size + TAG_SIZE`` and never needs the key.

The framing of such a stream follows from two numbers the client declares, the plaintext
size and the segment size (:func:`sealed_size`), so whoever receives it can check its length
without the key. Which segment was sealed as the last one is inside the AEAD: only a key
holder can check it, and :func:`open_segments` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from erasure.crypto import TAG_SIZE, decrypt_segment, encrypt_segment
from erasure.errors import InvalidParamsError, SealedStreamError
from erasure.objects import Buffer, split_segments


def segment_count(size: int, segment_size: int) -> int:
    """Segments an object of ``size`` plaintext bytes is cut into (0 for an empty one)."""
    if segment_size < 1 or size < 0:
        raise InvalidParamsError(f"bad size {size} or segment size {segment_size}")
    return -(-size // segment_size)


def sealed_size(size: int, segment_size: int) -> int:
    """Bytes of the sealed stream of a ``size``-byte object: one tag per segment."""
    return size + TAG_SIZE * segment_count(size, segment_size)


def seal_segments(key: bytes, chunks: Iterable[Buffer], segment_size: int) -> Iterator[bytes]:
    """The object's sealed segments, in order; their concatenation is what is uploaded."""
    for index, plaintext, is_last in split_segments(chunks, segment_size):
        yield encrypt_segment(key, index, is_last, plaintext)


def open_segments(
    key: bytes, chunks: Iterable[Buffer], segment_size: int, size: int
) -> Iterator[bytes]:
    """Plaintext segments of a sealed stream of an object of ``size`` bytes.

    Each segment is authenticated as it arrives (so a reader never writes unchecked bytes);
    a stream that is too short or too long raises :class:`SealedStreamError`, a segment
    sealed with another key, index or last-segment flag :class:`DecryptionError`.
    """
    count = segment_count(size, segment_size)
    last_size = size - (count - 1) * segment_size + TAG_SIZE
    seen = 0
    for index, sealed, is_last in split_segments(chunks, segment_size + TAG_SIZE):
        seen = index + 1
        if index >= count or (index == count - 1 and not is_last):
            raise SealedStreamError(f"the sealed stream is longer than its {count} segments")
        if is_last and index < count - 1:
            raise SealedStreamError(f"the sealed stream ended after {seen} of {count} segments")
        if is_last and len(sealed) != last_size:
            raise SealedStreamError(
                f"the last sealed segment is {len(sealed)} bytes, expected {last_size}"
            )
        yield decrypt_segment(key, index, is_last, sealed)
    if seen != count:
        raise SealedStreamError(f"the sealed stream ended after {seen} of {count} segments")
