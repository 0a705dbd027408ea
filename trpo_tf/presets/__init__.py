"""Tuned hyperparameters per environment, as YAML files next to this module.

A preset file ``<EnvId>.yaml`` (and any ``--config`` file) is a mapping of
:class:`~trpo_tf.TRPOConfig` fields (``env_kwargs`` is itself a mapping) plus an optional
``timesteps`` key: the default length of a training run. Comments in each file say what was measured and what is a starting point.
"""

from __future__ import annotations

import importlib.resources
import re
from typing import Any

import yaml

from trpo_tf.errors import ConfigError

TIMESTEPS_KEY = "timesteps"


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``) and refuses a
    mapping that repeats a key (PyYAML would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *anchor" may be overridden by design
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """``text`` parsed as YAML with safe types only; syntax errors raise ConfigError naming ``source``."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {' '.join(str(error).split())}") from None


def split_settings(values: Any, source: str) -> tuple[dict[str, Any], int | None]:
    """A preset/config mapping ``values`` read from ``source`` (named in errors) → (TRPOConfig fields,
    timesteps or None).

    An empty document is an empty mapping; anything but a mapping raises ConfigError.
    """
    if values is None:
        return {}, None
    if not isinstance(values, dict):
        raise ConfigError(f"{source} must be a mapping of TRPOConfig fields (and optionally "
                         f"'{TIMESTEPS_KEY}'), got {type(values).__name__}")
    fields = dict(values)
    timesteps = fields.pop(TIMESTEPS_KEY, None)
    if timesteps is not None and (not isinstance(timesteps, (int, float)) or isinstance(timesteps, bool)
                                  or timesteps < 1 or timesteps != int(timesteps)):
        raise ConfigError(f"{source}: '{TIMESTEPS_KEY}' must be a positive integer, got {timesteps!r}")
    return fields, None if timesteps is None else int(timesteps)


def read_file(path: str) -> tuple[dict[str, Any], int | None]:
    """The YAML config file at ``path`` → (TRPOConfig fields, timesteps or None)."""
    return split_settings(read_yaml_file(path), path)


def read_yaml_file(path: str, what: str = "config file") -> Any:
    """The YAML document in ``path`` (see :func:`parse_yaml`); ConfigError naming ``what`` and ``path`` when the
    file cannot be read, is not UTF-8 or is not YAML."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {error.object[error.start:error.start + 1]!r} "
                          f"at offset {error.start})") from None
    return parse_yaml(text, path)


def available() -> list[str]:
    """Environment ids that have a preset."""
    root = importlib.resources.files(__name__)
    return sorted(entry.name[: -len(".yaml")] for entry in root.iterdir() if entry.name.endswith(".yaml"))


def load(env_id: str) -> tuple[dict[str, Any], int | None] | None:
    """The preset of ``env_id`` as (TRPOConfig fields, timesteps), or None when there is none."""
    resource = importlib.resources.files(__name__).joinpath(f"{env_id}.yaml")
    if "/" in env_id or not resource.is_file():
        return None
    return split_settings(parse_yaml(resource.read_text(encoding="utf-8"), f"preset {env_id}.yaml"),
                          f"preset {env_id}.yaml")
