"""Signatures that tell checkpoints this user wrote from any others, and say which run and checkpoint they belong to.

A checkpoint's environment state is a pickle, and unpickling runs whatever the bytes say.
:func:`trpo_tf.checkpoint.save` stores beside those bytes what they belong to — the run's id
(random, written to ``run.json`` when the run is created), the checkpoint (``ckpt-N``) and the
environment id — and an HMAC-SHA256 of all of it, keyed by a secret of this user that lives
outside every run directory::

    {"run_id": "5f0c...", "checkpoint": "ckpt-4", "env_id": "CartPole-v1", "hmac": "hmac-sha256:<64 hex digits>"}

Resuming unpickles only bytes whose signature matches and names this run, this checkpoint and
this environment id (or bytes the caller says it trusts), so state copied from another of the
user's runs or checkpoints is refused too. Whoever can write a run directory but cannot read
the key cannot forge a signature. Signatures of trpo_tf before this scheme (a bare
``"hmac-sha256:..."`` string over the pickle alone) named no run: they vouch for nothing now.

The key is 32 random bytes, stored as 64 hex digits in ``$TRPO_TF_KEY_FILE`` or else
``$XDG_CONFIG_HOME/trpo_tf/run-key`` (``~/.config/trpo_tf/run-key``), created with mode 0600
on first use. Deleting it makes every earlier checkpoint "not signed by this user".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from typing import Any

from trpo_tf.errors import RunKeyError

KEY_FILE_VARIABLE = "TRPO_TF_KEY_FILE"
SCHEME = "hmac-sha256"
BOUND = ("run_id", "checkpoint", "env_id")
"""What a signature names besides the bytes: the run's id, the checkpoint (``ckpt-N``) and the environment id."""
_KEY_BYTES = 32
_DOMAIN = b"trpo_tf environment state, bound\x00"  # signatures of these bytes mean nothing elsewhere
_MAC = re.compile(rf"^{SCHEME}:[0-9a-f]{{64}}$")


class InvalidSignature(Exception):
    """A signature that does not vouch for the bytes; the message says why, following "the state ..."."""


def key_file() -> str:
    """Where this user's run key lives: ``$TRPO_TF_KEY_FILE``, else ``<config dir>/trpo_tf/run-key``."""
    configured = os.environ.get(KEY_FILE_VARIABLE)
    if configured:
        return configured
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config_home, "trpo_tf", "run-key")


def run_key(create: bool = True) -> bytes | None:
    """This user's run key (32 bytes), created on first use unless not ``create`` (then None when there is
    none yet); RunKeyError when it cannot be had."""
    path = key_file()
    if not os.path.exists(path):
        if not create:
            return None
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


def sign(data: bytes, bound: dict[str, str | None]) -> dict[str, str | None]:
    """The signature of ``data`` for ``bound`` (:data:`BOUND`: run id, checkpoint, env id) with this user's
    run key: ``bound`` with ``"hmac": "hmac-sha256:<64 hex digits>"`` added."""
    key = run_key()
    assert key is not None  # created when missing
    return {**bound, "hmac": f"{SCHEME}:{_mac(key, data, bound)}"}


def vouched_for(data: bytes, signature: Any) -> dict[str, str | None]:
    """What ``signature`` (as stored: any JSON value) binds ``data`` to — run id, checkpoint and env id —
    when it is :func:`sign` of ``data`` with this user's key; InvalidSignature saying why otherwise."""
    if signature is None:
        raise InvalidSignature("carries no signature (written before trpo_tf signed checkpoints, or not by trpo_tf)")
    if isinstance(signature, str) and signature.startswith(f"{SCHEME}:"):
        raise InvalidSignature("carries a signature of an earlier trpo_tf, which did not name the run and checkpoint "
                               "it belongs to")
    valid = (isinstance(signature, dict) and set(signature) == {*BOUND, "hmac"}
             and all(isinstance(signature[name], str) for name in ("run_id", "checkpoint", "hmac"))
             and isinstance(signature["env_id"], (str, type(None))) and _MAC.match(signature["hmac"]) is not None)
    if not valid:
        raise InvalidSignature(f"carries a malformed signature ({json.dumps(signature, ensure_ascii=True)[:80]})")
    bound = {name: signature[name] for name in BOUND}
    key = run_key(create=False)
    if key is None or not hmac.compare_digest(signature["hmac"], f"{SCHEME}:{_mac(key, data, bound)}"):
        raise InvalidSignature(f"is signed with another key than this user's run key {key_file()} (written by "
                               f"another user or machine, or altered)")
    return bound


def _mac(key: bytes, data: bytes, bound: dict[str, str | None]) -> str:
    """HMAC-SHA256 (hex) of the domain, ``bound`` as canonical JSON, a NUL byte and ``data``."""
    named = json.dumps([bound[name] for name in BOUND], ensure_ascii=True).encode("ascii")
    return hmac.new(key, _DOMAIN + named + b"\x00" + data, hashlib.sha256).hexdigest()


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
