"""WeCom protocol: callback crypto, safe XML, the API client, the outbound channel, callback processing."""

from api.wecom.client import WeComClient, WeComError
from api.wecom.crypto import CryptoError, WeComCrypto

__all__ = ["CryptoError", "WeComClient", "WeComCrypto", "WeComError"]
