"""The package's own error types: bad input, told apart from bugs.

Every error a user can cause and fix (an unknown environment id, a bad config value, a
missing or corrupted run directory, an environment that does not fit the policy) is an
:class:`InputError`. ``trpo-tf`` prints these as one line and exits with status 2; any other
exception is a bug and keeps its traceback. They subclass ``ValueError`` so that code which
caught ValueError before keeps working.

Messages name what a Python caller passes (``TRPO.load(run_dir, resume=True)``, ``log_dir``);
an error may also say what a ``trpo-tf`` user types instead (``--resume``, ``--logdir``), which
the command line prints in their place (:meth:`InputError.for_command_line`).
"""

from __future__ import annotations

from typing import Mapping


class InputError(ValueError):
    """Bad input that the user can fix; the message says what is wrong.

    ``command_line`` maps phrases of the message (Python arguments) to what ``trpo-tf`` takes
    instead, e.g. ``{"trust=True": "--trust-run"}``.
    """

    def __init__(self, *args: object, command_line: Mapping[str, str] | None = None):
        super().__init__(*args)
        self.command_line = dict(command_line or {})

    def for_command_line(self) -> str:
        """The message with its Python arguments replaced by the command line's flags."""
        text = str(self)
        for phrase, flag in self.command_line.items():
            text = text.replace(phrase, flag)
        return text


class ConfigError(InputError):
    """A hyperparameter or config file that is not valid."""


class UnknownEnvironmentError(InputError):
    """An environment id that gymnasium does not know, or arguments it does not accept."""


class UnsupportedSpaceError(InputError):
    """An observation or action space this library cannot model."""


class SpaceMismatchError(InputError):
    """An environment whose spaces differ from those the policy was trained on."""


class NetworkError(InputError):
    """A network of the user's own (``TRPO(policy_network=..., value_network=...)``) that cannot serve:
    its builder failed, it does not take the features or give [B, H], policy and value share
    variables, or a run's network cannot be rebuilt."""


class EnvironmentValueError(InputError):
    """An environment returned an observation or reward that training cannot use: of the wrong shape
    or type, not finite in float32, or (Discrete) outside the space."""


class ActionMaskError(EnvironmentValueError):
    """An action mask training cannot use: missing, of the wrong shape or type, not 0/1, NaN, allowing no
    action, or given by an environment whose action space takes none."""


class RunDirError(InputError):
    """A run directory that is missing, incomplete, corrupted or belongs to another run."""


class CallbackError(InputError):
    """A training callback given arguments it cannot work with, or used where it cannot work."""


class MissingDependencyError(InputError):
    """An optional feature whose packages are not installed; the message names the install command."""


class ExportError(InputError):
    """An export whose metadata is missing pieces, is not JSON or does not have the expected form."""


class RunDirInUseError(RunDirError):
    """A run directory locked by another training process."""


class UnreadableCheckpointError(RunDirError):
    """A checkpoint whose files or state cannot be read: damaged, missing, or from another version."""


class UntrustedRunError(RunDirError):
    """A checkpoint whose pickled environment state is not signed with this user's run key."""


class UntrustedModuleError(InputError):
    """An environment id recorded in a run directory or an export (``"module:Env-v0"``) that would import a
    module, which nothing the user said vouches for."""


class RunKeyError(InputError):
    """The per-user key that signs checkpoints cannot be read or created."""


class CheckpointWarning(UserWarning):
    """Part of the training state could not be saved or restored exactly."""


class WorkerRestartWarning(UserWarning):
    """A sampling worker failed and was replaced (``restart_workers=True``); training went on."""
