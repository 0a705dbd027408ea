"""Signatures that tell checkpoints this user wrote from any others.

A checkpoint's environment state is a pickle, and unpickling runs whatever the bytes say.
:func:`trpo_tf.checkpoint.save` stores an HMAC-SHA256 of those bytes beside them, keyed by a
secret of this user that lives outside every run directory; resuming unpickles only bytes
whose signature matches (or bytes the caller says it trusts). Whoever can write a run
directory but cannot read the key cannot forge a signature.

The key is 32 random bytes, stored as 64 hex digits in ``$TRPO_TF_KEY_FILE`` or else
``$XDG_CONFIG_HOME/trpo_tf/run-key`` (``~/.config/trpo_tf/run-key``), created with mode 0600
on first use. Deleting it makes every earlier checkpoint "not signed by this user".
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat

from trpo_tf.errors import RunKeyError

KEY_FILE_VARIABLE = "TRPO_TF_KEY_FILE"
SCHEME = "hmac-sha256"
_KEY_BYTES = 32
_DOMAIN = b"trpo_tf environment state\x00"  # signatures of these bytes mean nothing elsewhere


def key_file() -> str:
    """Where this user's run key lives: ``$TRPO_TF_KEY_FILE``, else ``<config dir>/trpo_tf/run-key``."""
    configured = os.environ.get(KEY_FILE_VARIABLE)
    if configured:
        return configured
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config_home, "trpo_tf", "run-key")


def run_key() -> bytes:
    """This user's run key (32 bytes), created on first use; RunKeyError when it cannot be had."""
    path = key_file()
    if not os.path.exists(path):
        _create_key(path)
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise RunKeyError(f"cannot read the run key {path}: {getattr(error, 'strerror', None) or error}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise RunKeyError(f"the run key {path} is open to other users (mode {stat.S_IMODE(mode):04o}); "
                          f"make it private with: chmod 600 {path}")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != _KEY_BYTES:
        raise RunKeyError(f"the run key {path} is corrupted (expected {2 * _KEY_BYTES} hex digits); delete it "
                          f"to make a new one (runs signed with the old key then resume only with trust=True)",
                          command_line={"trust=True": "--trust-run"})
    return key


def sign(data: bytes) -> str:
    """``"hmac-sha256:<64 hex digits>"``: the signature of ``data`` with this user's run key."""
    digest = hmac.new(run_key(), _DOMAIN + data, hashlib.sha256).hexdigest()
    return f"{SCHEME}:{digest}"


def verify(data: bytes, signature: object) -> bool:
    """Whether ``signature`` (as stored in a checkpoint: any JSON value) is :func:`sign` of ``data``."""
    return isinstance(signature, str) and hmac.compare_digest(signature, sign(data))


def _create_key(path: str) -> None:
    """Write a new random key to ``path`` (mode 0600), unless another process does so first.

    The key is written to a temporary file and linked into place, so no process ever reads
    a half-written key; of two processes creating it at once, the first link wins.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(_KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    except OSError as error:
        raise RunKeyError(f"cannot create the run key {path}: {error.strerror or error} (set "
                          f"{KEY_FILE_VARIABLE} to a writable file outside your run directories)") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
