"""Typed configs: dataclasses loaded from YAML with dotted overrides, through OmegaConf.

Every project declares its configuration as (nested) dataclasses with the paper's
defaults, and loads it with :func:`load_config`::

    @dataclass
    class OptimConfig:
        lr: float = 0.3  # base learning rate, TiCo Sec. 4

    @dataclass
    class TrainConfig:
        optim: OptimConfig = field(default_factory=OptimConfig)
        epochs: int = 100

    config = load_config(TrainConfig, "configs/smoke.yaml", ["optim.lr=0.1", "epochs=2"])

Unknown keys and values of the wrong type fail with :class:`ConfigError` naming the
key. ``__post_init__`` of the dataclasses runs on the merged values, so range checks
live next to the fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    GrammarParseError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the fix."""


def _describe(error: OmegaConfBaseException, origin: str) -> str:
    key = getattr(error, "full_key", None) or getattr(error, "key", None) or "?"
    reason = str(error).splitlines()[0].rstrip(".")
    if isinstance(error, ConfigKeyError | ConfigAttributeError):
        return f"unknown config key '{key}' in {origin}: {reason}; check its spelling"
    if isinstance(error, MissingMandatoryValue):
        return f"config key '{key}' has no value ({origin}); set it, e.g. {key}=<value>"
    if isinstance(error, ValidationError):
        return f"wrong type for config key '{key}' in {origin}: {reason}"
    return f"invalid config ({origin}) at key '{key}': {reason}"


def _merge(base: DictConfig, other: Any, origin: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(_describe(error, origin)) from None


def _parse_overrides(overrides: Sequence[str]) -> DictConfig:
    for override in overrides:
        if "=" not in override or override.startswith("="):
            raise ConfigError(
                f"override {override!r} is not of the form key.sub=value (for example optim.lr=0.1)"
            )
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except (GrammarParseError, OmegaConfBaseException) as error:
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {error}") from None


def load_config(
    schema: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()
) -> T:
    """Defaults of ``schema``, then the YAML file at ``path``, then ``key.sub=value`` overrides."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"schema must be a dataclass type, got {schema!r}")
    config = OmegaConf.structured(schema)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing YAML file")
        try:
            from_file = OmegaConf.load(path)
        except Exception as error:  # yaml.YAMLError and friends
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        if not isinstance(from_file, DictConfig):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        config = _merge(config, from_file, str(path))
    overrides = list(overrides)
    if overrides:
        config = _merge(config, _parse_overrides(overrides), "command-line overrides")
    try:
        return OmegaConf.to_object(config)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(_describe(error, str(path or "defaults"))) from None


def to_dict(config: Any) -> dict[str, Any]:
    """A resolved config as plain nested dicts (for JSON, logging and comparison)."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


def to_yaml(config: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (a crash leaves the old file or none)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(to_yaml(config))
    tmp.replace(path)


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    keys = sorted(set(old) | set(new))
    differences = []
    for key in keys:
        dotted = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += config_differences(a, b, dotted + ".")
        elif a != b:
            differences.append(f"{dotted}: {a!r} -> {b!r}")
    return differences
