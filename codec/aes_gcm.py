"""AES-256-GCM payload codec: workflow inputs, results and failures leave the
process encrypted, so the Temporal service (and anyone reading its database or
its Web UI without the key) sees only ciphertext.

Keys come from the environment, base64 of 32 random bytes:

- ``BATCH_CODEC_KEY``: the one key new payloads are encrypted with.
- ``BATCH_CODEC_OLD_KEYS``: comma-separated former keys, for decoding only, so
  histories written before a rotation stay readable.

Each encrypted payload names its key by id (the first 8 hex digits of the key's
SHA-256) in its metadata: the id is no secret, and it tells a reader which key
it needs. The whole original payload, metadata included, is the plaintext, so
even its encoding (``json/plain``, ...) is hidden.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from contracts.constants import ENV_CODEC_KEY, ENV_CODEC_OLD_KEYS

ENCODING = b"binary/encrypted"
METADATA_ENCODING = "encoding"
METADATA_KEY_ID = "encryption-key-id"

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


class CodecKeyError(ValueError):
    """A key in the environment is not base64 of 32 bytes; the message names the variable."""


class PayloadDecryptionError(ValueError):
    """An encrypted payload cannot be decrypted: unknown key id, or altered bytes."""


def key_id(key: bytes) -> str:
    """Short, public name of a key: enough to pick the right one, useless to an attacker."""
    return hashlib.sha256(key).hexdigest()[:8]


def generate_key() -> str:
    """A fresh key, as BATCH_CODEC_KEY expects it."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def parse_key(text: str, source: str) -> bytes:
    """Decode one base64 key; `source` (a variable name) goes into the error, the key never does."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise CodecKeyError(
            f"{source} is not valid base64: it must be base64 of {KEY_BYTES} random bytes "
            "(generate one with `python -m codec keygen`)"
        ) from None
    if len(raw) != KEY_BYTES:
        raise CodecKeyError(
            f"{source} decodes to {len(raw)} bytes, but AES-256-GCM needs exactly {KEY_BYTES} "
            "(generate one with `python -m codec keygen`)"
        )
    return raw


class AesGcmCodec(PayloadCodec):
    """Encrypts with one key, decrypts with that key or any old one; passes plaintext through."""

    def __init__(self, key: bytes, old_keys: Sequence[bytes] = ()) -> None:
        if len(key) != KEY_BYTES:
            raise CodecKeyError(f"an AES-256-GCM key is {KEY_BYTES} bytes, got {len(key)}")
        self.key_id = key_id(key)
        self._encryptor = AESGCM(key)
        self._decryptors: dict[str, AESGCM] = {self.key_id: self._encryptor}
        for old in old_keys:
            if len(old) != KEY_BYTES:
                raise CodecKeyError(f"an AES-256-GCM key is {KEY_BYTES} bytes, got {len(old)}")
            self._decryptors.setdefault(key_id(old), AESGCM(old))

    @property
    def key_ids(self) -> list[str]:
        """Ids of every key this codec can decrypt with, the current one first."""
        return list(self._decryptors)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        # The key id is authenticated data: a payload relabelled with another id fails.
        sealed = self._encryptor.encrypt(
            nonce, payload.SerializeToString(), self.key_id.encode("ascii")
        )
        return Payload(
            metadata={
                METADATA_ENCODING: ENCODING,
                METADATA_KEY_ID: self.key_id.encode("ascii"),
            },
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get(METADATA_ENCODING) != ENCODING:
            # Written without the codec (before encryption was switched on): leave as is.
            return payload
        kid = payload.metadata.get(METADATA_KEY_ID, b"").decode("ascii", "replace")
        decryptor = self._decryptors.get(kid)
        if decryptor is None:
            raise PayloadDecryptionError(
                f"payload was encrypted with key id {kid or '(none)'}, which is neither "
                f"{ENV_CODEC_KEY} nor in {ENV_CODEC_OLD_KEYS} (known key ids: "
                f"{', '.join(self.key_ids)}); add the key it was written with to "
                f"{ENV_CODEC_OLD_KEYS}"
            )
        data = payload.data
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {kid} is truncated ({len(data)} bytes)"
            )
        try:
            plain = decryptor.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], kid.encode("ascii"))
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {kid} failed authentication: "
                "it was altered or corrupted after encryption"
            ) from None
        return Payload.FromString(plain)


def codec_from_env(environ: Mapping[str, str] | None = None) -> AesGcmCodec | None:
    """The codec the environment asks for, or None when BATCH_CODEC_KEY is unset or empty."""
    env = os.environ if environ is None else environ
    current = env.get(ENV_CODEC_KEY, "").strip()
    old_text = env.get(ENV_CODEC_OLD_KEYS, "").strip()
    if not current:
        if old_text:
            # Old keys alone would mean writing plaintext while meaning to encrypt.
            raise CodecKeyError(
                f"{ENV_CODEC_OLD_KEYS} is set but {ENV_CODEC_KEY} is not: set {ENV_CODEC_KEY} "
                "to the key new payloads are encrypted with"
            )
        return None
    key = parse_key(current, ENV_CODEC_KEY)
    old_keys = [
        parse_key(part, f"{ENV_CODEC_OLD_KEYS} (entry {n})")
        for n, part in enumerate(old_text.split(","), start=1)
        if part.strip()
    ]
    return AesGcmCodec(key, old_keys)
