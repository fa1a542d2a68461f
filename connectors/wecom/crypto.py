"""WeCom callback crypto (platforms.md §6.1), a port of the official WXBizMsgCrypt sample.

msg_signature = sha1 of the sorted, concatenated [token, timestamp, nonce, encrypted]; the payload is
AES-256-CBC with IV = key[:16] and PKCS#7 padding to a 32-byte block; the plaintext is
random(16) + big-endian length(4) + message + receiveid. Pure functions; tests use `encrypt` to build
requests byte-for-byte as WeCom does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hub.errors import VerificationError

BLOCK = 32


def aes_key(encoding_aes_key: str) -> bytes:
    """The 43-character EncodingAESKey → 32 key bytes (ValueError when it is not one)."""
    if len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


def msg_signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


def check_signature(token: str, timestamp: str, nonce: str, encrypted: str, given: str) -> None:
    expected = msg_signature(token, timestamp, nonce, encrypted)
    if not hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
        raise VerificationError("msg_signature does not match", code="bad_signature")


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def encrypt(key: bytes, message: bytes, receive_id: str, random16: bytes | None = None) -> str:
    plain = (random16 or os.urandom(16)) + struct.pack(">I", len(message)) + message + receive_id.encode()
    pad = BLOCK - len(plain) % BLOCK
    plain += bytes([pad]) * pad
    encryptor = _cipher(key).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def decrypt(key: bytes, encrypted: str, receive_ids: set[str]) -> bytes:
    """The message inside `encrypted`, checking padding, length and that the receiveid is one we expect."""
    try:
        data = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("encrypted payload is not base64", code="bad_ciphertext") from exc
    if not data or len(data) % 16:
        raise VerificationError("encrypted payload is not whole AES blocks", code="bad_ciphertext")
    decryptor = _cipher(key).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise VerificationError("bad padding (wrong EncodingAESKey?)", code="bad_ciphertext")
    plain = plain[:-pad]
    if len(plain) < 20:
        raise VerificationError("decrypted payload is too short", code="bad_ciphertext")
    (length,) = struct.unpack(">I", plain[16:20])
    if 20 + length > len(plain):
        raise VerificationError("decrypted length is out of range", code="bad_ciphertext")
    message, receive_id = plain[20:20 + length], plain[20 + length:]
    if receive_id.decode("utf-8", "replace") not in receive_ids:
        raise VerificationError("receiveid does not match the configured corp_id/suite_id (-40005)",
                                code="receiveid_mismatch")
    return message
