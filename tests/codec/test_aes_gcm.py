"""AesGcmCodec: round trip, secrecy, integrity, key rotation and the environment it reads."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes

from codec import (
    AesGcmCodec,
    CodecKeyError,
    PayloadDecryptionError,
    codec_from_env,
    generate_key,
    key_id,
)
from codec.__main__ import main as codec_main
from codec.aes_gcm import ENCODING, METADATA_KEY_ID
from temporal_client import data_converter
from tests.codec.helpers import KEY, KEY_B64, OLD_KEY, OLD_KEY_B64

SECRET = "patient 4711: diagnosis confidential"


def plain(text: str = SECRET) -> Payload:
    return pydantic_data_converter.payload_converter.to_payloads([{"note": text}])[0]


async def test_round_trip_restores_the_payload_metadata_included():
    codec = AesGcmCodec(KEY)
    original = [plain(), plain("second"), Payload(data=b"")]
    encoded = await codec.encode(original)
    assert [p.metadata["encoding"] for p in encoded] == [ENCODING] * 3
    assert await codec.decode(encoded) == original


async def test_ciphertext_hides_plaintext_and_its_encoding():
    encoded = (await AesGcmCodec(KEY).encode([plain()]))[0]
    wire = encoded.SerializeToString()
    assert SECRET.encode() not in wire
    assert b"confidential" not in wire
    assert b"json/plain" not in wire
    assert base64.b64encode(SECRET.encode())[:16] not in wire


async def test_each_encryption_uses_a_fresh_nonce():
    codec = AesGcmCodec(KEY)
    first, second = await codec.encode([plain(), plain()])
    assert first.data[:12] != second.data[:12]
    assert first.data != second.data


async def test_metadata_names_the_key_by_a_short_public_id():
    codec = AesGcmCodec(KEY)
    encoded = (await codec.encode([plain()]))[0]
    assert encoded.metadata[METADATA_KEY_ID] == key_id(KEY).encode()
    assert len(codec.key_id) == 8
    assert codec.key_id != key_id(OLD_KEY)


@pytest.mark.parametrize("index", [0, 5, 20, -1], ids=["nonce", "nonce-end", "body", "tag"])
async def test_a_flipped_byte_fails_authentication(index):
    codec = AesGcmCodec(KEY)
    encoded = (await codec.encode([plain()]))[0]
    data = bytearray(encoded.data)
    data[index] ^= 0x01
    tampered = Payload(metadata=dict(encoded.metadata), data=bytes(data))
    with pytest.raises(PayloadDecryptionError, match=f"key id {codec.key_id} failed auth"):
        await codec.decode([tampered])


async def test_a_truncated_payload_is_refused():
    codec = AesGcmCodec(KEY)
    encoded = (await codec.encode([plain()]))[0]
    short = Payload(metadata=dict(encoded.metadata), data=encoded.data[:20])
    with pytest.raises(PayloadDecryptionError, match="truncated"):
        await codec.decode([short])


async def test_relabelling_the_key_id_fails_even_when_both_keys_are_known():
    codec = AesGcmCodec(KEY, [OLD_KEY])
    encoded = (await codec.encode([plain()]))[0]
    relabelled = Payload(
        metadata={**encoded.metadata, METADATA_KEY_ID: key_id(OLD_KEY).encode()},
        data=encoded.data,
    )
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await codec.decode([relabelled])


async def test_unknown_key_id_is_named_in_the_error():
    written = (await AesGcmCodec(OLD_KEY).encode([plain()]))[0]
    with pytest.raises(PayloadDecryptionError) as caught:
        await AesGcmCodec(KEY).decode([written])
    message = str(caught.value)
    assert f"key id {key_id(OLD_KEY)}" in message
    assert "BATCH_CODEC_OLD_KEYS" in message
    assert key_id(KEY) in message


async def test_rotation_old_keys_decode_and_the_current_key_encodes():
    before = AesGcmCodec(OLD_KEY)
    written_before = await before.encode([plain("from last year")])

    after = codec_from_env({"BATCH_CODEC_KEY": KEY_B64, "BATCH_CODEC_OLD_KEYS": OLD_KEY_B64})
    assert after is not None
    assert after.key_ids == [key_id(KEY), key_id(OLD_KEY)]
    assert await after.decode(written_before) == [plain("from last year")]

    written_after = (await after.encode([plain()]))[0]
    assert written_after.metadata[METADATA_KEY_ID] == key_id(KEY).encode()
    with pytest.raises(PayloadDecryptionError, match=key_id(KEY)):
        await before.decode([written_after])


async def test_payloads_written_without_the_codec_pass_through():
    codec = AesGcmCodec(KEY)
    unencrypted = [plain(), Payload(metadata={"encoding": b"binary/null"}), Payload()]
    encrypted = (await codec.encode([plain("x")]))[0]
    decoded = await codec.decode([unencrypted[0], encrypted, *unencrypted[1:]])
    assert decoded == [unencrypted[0], plain("x"), *unencrypted[1:]]


def test_codec_from_env_is_none_without_a_key():
    assert codec_from_env({}) is None
    assert codec_from_env({"BATCH_CODEC_KEY": "  "}) is None


def test_codec_from_env_accepts_url_safe_base64_and_blank_old_key_entries():
    url_safe = base64.urlsafe_b64encode(KEY).decode()
    codec = codec_from_env(
        {"BATCH_CODEC_KEY": f" {url_safe}\n", "BATCH_CODEC_OLD_KEYS": f" ,{OLD_KEY_B64}, "}
    )
    assert codec is not None
    assert codec.key_ids == [key_id(KEY), key_id(OLD_KEY)]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"BATCH_CODEC_KEY": base64.b64encode(b"k" * 16).decode()},
            "BATCH_CODEC_KEY decodes to 16",
        ),
        (
            {"BATCH_CODEC_KEY": base64.b64encode(b"k" * 33).decode()},
            "BATCH_CODEC_KEY decodes to 33",
        ),
        ({"BATCH_CODEC_KEY": "not base64 at all!"}, "BATCH_CODEC_KEY is not valid base64"),
        (
            {"BATCH_CODEC_KEY": KEY_B64, "BATCH_CODEC_OLD_KEYS": f"{OLD_KEY_B64},short"},
            r"BATCH_CODEC_OLD_KEYS \(entry 2\)",
        ),
        ({"BATCH_CODEC_OLD_KEYS": OLD_KEY_B64}, "BATCH_CODEC_OLD_KEYS is set but BATCH_CODEC_KEY"),
    ],
    ids=["16-bytes", "33-bytes", "not-base64", "bad-old-key", "old-keys-only"],
)
def test_malformed_environment_names_the_variable_and_hides_the_value(environ, expected):
    with pytest.raises(CodecKeyError, match=expected) as caught:
        codec_from_env(environ)
    assert isinstance(caught.value, ValueError)
    for value in environ.values():
        for part in value.split(","):
            if len(part) > 8:
                assert part not in str(caught.value)


def test_keygen_prints_a_key_codec_from_env_accepts(capsys):
    assert codec_main(["keygen"]) == 0
    printed = capsys.readouterr().out.strip()
    codec = codec_from_env({"BATCH_CODEC_KEY": printed})
    assert codec is not None
    assert printed != generate_key()


def test_serve_without_a_key_exits_with_a_clear_message(monkeypatch, capsys):
    monkeypatch.delenv("BATCH_CODEC_KEY", raising=False)
    monkeypatch.delenv("BATCH_CODEC_OLD_KEYS", raising=False)
    assert codec_main(["serve", "--port", "1"]) == 2
    assert "BATCH_CODEC_KEY is not set" in capsys.readouterr().err


def test_data_converter_adds_the_codec_only_when_a_key_is_set():
    assert data_converter({}) is pydantic_data_converter
    converter = data_converter({"BATCH_CODEC_KEY": KEY_B64})
    assert isinstance(converter.payload_codec, AesGcmCodec)
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    assert isinstance(converter.failure_converter, DefaultFailureConverterWithEncodedAttributes)
    assert dataclasses.replace(converter, payload_codec=None).payload_codec is None


async def test_data_converter_round_trips_pydantic_values():
    converter = data_converter({"BATCH_CODEC_KEY": KEY_B64})
    payloads = await converter.encode([{"note": SECRET}])
    assert SECRET.encode() not in payloads[0].SerializeToString()
    assert await converter.decode(payloads, [dict]) == [{"note": SECRET}]
