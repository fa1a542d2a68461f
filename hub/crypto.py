"""Encrypting connector and endpoint secrets at rest with Fernet (AES-128-CBC + HMAC)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from hub.errors import SecretUnreadable


class SecretBox:
    def __init__(self, key: str, *, key_origin: str = "CRMHUB_SECRET_KEY") -> None:
        derived = hashlib.sha256(key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        self._unreadable = (f"cannot decrypt a stored secret with the key from {key_origin}: the database was "
                            "written with another key (is CRMHUB_SECRET_KEY or CRMHUB_DATA_DIR not the one used "
                            "before?)")

    def seal(self, data: Any) -> str:
        return self._fernet.encrypt(json.dumps(data, ensure_ascii=False).encode()).decode()

    def open(self, token: str) -> Any:
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise SecretUnreadable(self._unreadable) from exc

    def seal_str(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open_str(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretUnreadable(self._unreadable) from exc
