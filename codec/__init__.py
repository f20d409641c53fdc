"""Optional payload encryption: the AES-GCM codec and the codec server the Web UI calls.

python -m codec keygen               # print a fresh BATCH_CODEC_KEY
python -m codec serve --port 8081    # codec server for the Web UI and CLI
"""

from __future__ import annotations

from codec.aes_gcm import (
    AesGcmCodec,
    CodecKeyError,
    PayloadDecryptionError,
    codec_from_env,
    generate_key,
    key_id,
)

__all__ = [
    "AesGcmCodec",
    "CodecKeyError",
    "PayloadDecryptionError",
    "codec_from_env",
    "generate_key",
    "key_id",
]
