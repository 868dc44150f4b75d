"""Secret variables at rest: each value sealed with AES-256-GCM under the server's key.

A stored value reads ``enc:v1:<base64(nonce + ciphertext)>``: a random 96-bit nonce per value,
and the job id as associated data, so that a value copied into another job's row does not open.
Values without the prefix were stored before encryption and are read as they are.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hodei.domain.errors import HodeiError

KEY_SETTING = "HODEI_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
KEY_BYTES = 32
NONCE_BYTES = 12
SEALED_PREFIX = "enc:v1:"


class SecretKeyError(HodeiError):
    """The secret key given is not a usable AES-256 key."""


class SecretUnreadableError(HodeiError):
    """A stored secret value does not open with this server's key (or was tampered with)."""


def parse_secret_key(text: str, *, source: str = KEY_SETTING) -> bytes:
    """The 32-byte key written as base64 (standard or URL-safe, padding optional).

    Raises:
        SecretKeyError: not base64, or not 32 bytes; the message names ``source``, never the key.
    """
    compact = "".join(text.split()).translate(str.maketrans("-_", "+/"))
    try:
        key = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SecretKeyError(
            f"{source} is not base64; make one with `openssl rand -base64 32`"
        ) from None
    if len(key) != KEY_BYTES:
        raise SecretKeyError(
            f"{source} must hold {KEY_BYTES} bytes (AES-256) in base64, it holds {len(key)}; "
            "make one with `openssl rand -base64 32`"
        )
    return key


def new_key_text() -> str:
    """A fresh random key, as base64."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def load_or_create_key_file(path: Path) -> tuple[bytes, bool]:
    """The key kept in ``path``, made (random, mode 0600) when the file does not exist.

    Returns:
        The key, and whether the file was created just now.

    Raises:
        SecretKeyError: the file exists but holds no usable key.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return parse_secret_key(path.read_text(), source=f"the key file {path}"), False
    with os.fdopen(fd, "w") as file:
        file.write(new_key_text() + "\n")
    return parse_secret_key(path.read_text(), source=f"the key file {path}"), True


class SecretBox:
    """Seals and opens the values of jobs' secret variables with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SecretKeyError(f"a secret key must be {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_text(cls, text: str, *, source: str = KEY_SETTING) -> SecretBox:
        """A box for a key written as base64 (see ``parse_secret_key``)."""
        return cls(parse_secret_key(text, source=source))

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def seal(self, job_id: str, value: str) -> str:
        """``value`` encrypted for the job ``job_id``, as stored."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), job_id.encode())
        return SEALED_PREFIX + base64.b64encode(nonce + sealed).decode()

    def seal_all(self, job_id: str, values: Mapping[str, str]) -> dict[str, str]:
        """Every value of ``values`` sealed for the job ``job_id``."""
        return {name: self.seal(job_id, value) for name, value in values.items()}

    def open(self, job_id: str, stored: str) -> str:
        """The value stored for the job ``job_id``; a value stored unsealed is returned as is.

        Raises:
            SecretUnreadableError: wrong key, another job's value, or altered text.
        """
        if not is_sealed(stored):
            return stored
        try:
            raw = base64.b64decode(stored.removeprefix(SEALED_PREFIX), validate=True)
            opened = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], job_id.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretUnreadableError(
                f"a secret variable of job {job_id} cannot be decrypted: it was sealed with "
                f"another {KEY_SETTING}, or altered"
            ) from None
        return opened.decode()


def is_sealed(stored: str) -> bool:
    """Whether a stored value is encrypted (rather than plaintext from before encryption)."""
    return stored.startswith(SEALED_PREFIX)


def open_all(box: SecretBox | None, job_id: str, stored: Mapping[str, str]) -> dict[str, str]:
    """The job's secret values in clear; ``box`` None opens only values stored unsealed.

    Raises:
        SecretUnreadableError: a value does not open (or is sealed and there is no key).
    """
    if box is None:
        if any(is_sealed(value) for value in stored.values()):
            raise SecretUnreadableError(
                f"the secret variables of job {job_id} are encrypted and this server has no "
                f"{KEY_SETTING}"
            )
        return dict(stored)
    return {name: box.open(job_id, value) for name, value in stored.items()}
