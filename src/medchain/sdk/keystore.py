"""Private keys at rest: SM4-GCM under a key derived from a passphrase.

File format (JSON, one key per file):
  {"format": "medchain-key/1", "name", "suite", "public_key" (hex),
   "kdf": {"name": "pbkdf2-hmac-sm3", "salt", "iterations"},
   "cipher": "sm4-gcm", "sealed" (hex: nonce || ciphertext || tag)}
The public key is the associated data, so a file whose public key was swapped
does not decrypt.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from medchain import crypto
from medchain.crypto import primitives
from medchain.exceptions import MedChainError

FORMAT = "medchain-key/1"
DEFAULT_ITERATIONS = 200_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


MIN_PASSPHRASE_CHARS = 12


class KeystoreError(MedChainError):
    """A key file is missing, malformed, or the passphrase is wrong (or too short)."""


def check_new_passphrase(passphrase: str) -> None:
    """A new key file's passphrase must be long enough to resist guessing: a stolen
    key file can be attacked offline, at the speed of the KDF, for as long as it takes."""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise KeystoreError(
            f"the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters "
            f"(this one has {len(passphrase)}); a few words together are easy to remember"
        )


def encrypt_key(
    name: str, key: crypto.KeyPair, passphrase: str, iterations: int = DEFAULT_ITERATIONS
) -> dict[str, object]:
    """The key file document for `key`."""
    salt = primitives.random_bytes(16)
    kek = primitives.pbkdf2_sm3(passphrase.encode(), salt, iterations, 16)
    sealed = primitives.sm4_gcm_seal(kek, key.private, key.public)
    return {
        "format": FORMAT,
        "name": name,
        "suite": key.suite,
        "public_key": key.public.hex(),
        "kdf": {"name": "pbkdf2-hmac-sm3", "salt": salt.hex(), "iterations": iterations},
        "cipher": "sm4-gcm",
        "sealed": sealed.hex(),
    }


def decrypt_key(doc: dict[str, object], passphrase: str) -> crypto.KeyPair:
    """Recover the key pair; KeystoreError on a wrong passphrase or tampering."""
    try:
        if doc["format"] != FORMAT:
            raise KeystoreError(f"unsupported key file format {doc['format']!r}")
        kdf = doc["kdf"]
        assert isinstance(kdf, dict)
        public = bytes.fromhex(str(doc["public_key"]))
        kek = primitives.pbkdf2_sm3(
            passphrase.encode(), bytes.fromhex(kdf["salt"]), int(kdf["iterations"]), 16
        )
        private = primitives.sm4_gcm_open(kek, bytes.fromhex(str(doc["sealed"])), public)
        key = crypto.keypair_from_private(str(doc["suite"]), private)
    except primitives.DecryptionFailed:
        raise KeystoreError("wrong passphrase, or the key file was altered") from None
    except (KeyError, ValueError, TypeError, AssertionError) as e:
        raise KeystoreError(f"malformed key file: {e}") from None
    if key.public != public:
        raise KeystoreError("key file public key does not match its private key")
    return key


class Keystore:
    """A directory of encrypted key files, `<dir>/<name>.json`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        """The file a key is kept in; names are checked so one cannot point outside the store."""
        if not _NAME.fullmatch(name):
            raise KeystoreError("key names use letters, digits, '.', '_' and '-'")
        return self.directory / f"{name}.json"

    def names(self) -> list[str]:
        """The names of every key in the store, sorted."""
        return sorted(p.stem for p in self.directory.glob("*.json"))

    def save(
        self, name: str, key: crypto.KeyPair, passphrase: str, iterations: int = DEFAULT_ITERATIONS
    ) -> Path:
        """Write a new key file (mode 0600); never overwrites. KeystoreError if the
        passphrase is shorter than MIN_PASSPHRASE_CHARS."""
        check_new_passphrase(passphrase)
        path = self.path(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        doc = encrypt_key(name, key, passphrase, iterations)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
        return path

    def public_info(self, name: str) -> dict[str, object]:
        """Name, suite and public key, without the passphrase."""
        doc = self._read(name)
        return {"name": name, "suite": doc["suite"], "public_key": doc["public_key"]}

    def load(self, name: str, passphrase: str) -> crypto.KeyPair:
        """Decrypt a key with its passphrase; KeystoreError if absent, altered or the
        passphrase is wrong."""
        return decrypt_key(self._read(name), passphrase)

    def _read(self, name: str) -> dict[str, object]:
        path = self.path(name)
        if not path.exists():
            raise KeystoreError(f"no key named {name!r} in {self.directory}")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise KeystoreError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise KeystoreError(f"{path} is not a key file")
        return doc
