"""WeCom callback signatures and AES message encryption, per the official scheme (wecom.md §1).

Stricter than Tencent's sample: constant-time signature compare, every PKCS#7 pad byte checked
(32-byte blocks), the length prefix bounded by the buffer, and the trailing receiveid compared.
Each failure raises :class:`CryptoError` carrying the official error code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeCom pads to 32 bytes, not AES's 16

SIGNATURE_INVALID = -40001
XML_INVALID = -40002
AES_KEY_INVALID = -40004
RECEIVEID_INVALID = -40005
DECRYPT_FAILED = -40007
BUFFER_INVALID = -40008


class CryptoError(ValueError):
    """A callback that fails verification or decryption; ``code`` is WeCom's official error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """sha1 of the four values sorted and joined."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


class WeComCrypto:
    """Verifies, decrypts and encrypts callback payloads of one app (token, EncodingAESKey, receiveid)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if len(encoding_aes_key) != 43:
            raise CryptoError(AES_KEY_INVALID, "EncodingAESKey must be exactly 43 characters")
        try:
            self.key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error as exc:
            raise CryptoError(AES_KEY_INVALID, "EncodingAESKey is not base64") from exc
        if len(self.key) != 32:
            raise CryptoError(AES_KEY_INVALID, "EncodingAESKey must decode to 32 bytes")
        self.token = token
        self.receive_id = receive_id.encode()

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = signature(self.token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected.encode(), msg_signature.strip().lower().encode()):
            raise CryptoError(SIGNATURE_INVALID, "signature mismatch")

    def decrypt(self, encrypted: str) -> str:
        """Plaintext message of a base64 ``Encrypt`` value; checks padding, length and receiveid."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError(DECRYPT_FAILED, "ciphertext is not base64") from exc
        if not data or len(data) % 16:
            raise CryptoError(DECRYPT_FAILED, "ciphertext length is not a multiple of the AES block")
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or pad > len(plain) or plain[-pad:] != bytes([pad]) * pad:
            raise CryptoError(DECRYPT_FAILED, "bad PKCS#7 padding")
        body = plain[16:-pad]
        if len(body) < 4:
            raise CryptoError(BUFFER_INVALID, "plaintext too short")
        (length,) = struct.unpack(">I", body[:4])
        if length > len(body) - 4:
            raise CryptoError(BUFFER_INVALID, "message length exceeds the buffer")
        message, receive_id = body[4:4 + length], body[4 + length:]
        if not hmac.compare_digest(receive_id, self.receive_id):
            raise CryptoError(RECEIVEID_INVALID, "receiveid mismatch")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CryptoError(BUFFER_INVALID, "message is not UTF-8") from exc

    def verify_and_decrypt(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> str:
        self.verify(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def encrypt(self, message: str, random_prefix: bytes | None = None) -> str:
        """Base64 ciphertext of ``message`` (for passive replies, tests and the load generator)."""
        prefix = random_prefix if random_prefix is not None else os.urandom(16)
        raw = message.encode()
        body = prefix + struct.pack(">I", len(raw)) + raw + self.receive_id
        pad = BLOCK - len(body) % BLOCK
        body += bytes([pad]) * pad
        encryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).encryptor()
        return base64.b64encode(encryptor.update(body) + encryptor.finalize()).decode()

    def encrypted_reply(self, message: str, timestamp: str, nonce: str, random_prefix: bytes | None = None) -> str:
        """A passive reply envelope: ``<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>``."""
        encrypted = self.encrypt(message, random_prefix)
        sig = signature(self.token, timestamp, nonce, encrypted)
        return (f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt><MsgSignature><![CDATA[{sig}]]></MsgSignature>"
                f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>")
