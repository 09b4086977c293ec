from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shared.config import (
    ConfigError,
    config_differences,
    load_config,
    save_config,
    to_dict,
)


@dataclass
class OptimConfig:
    lr: float = 0.3
    name: str = "sgd"


@dataclass
class TrainConfig:
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 100
    ks: list[int] = field(default_factory=lambda: [10, 20])

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "smoke.yaml"
    path.write_text("epochs: 5\noptim:\n  lr: 0.05\n")
    config = load_config(TrainConfig, path, ["optim.lr=0.1", "ks=[1,5]"])
    assert config == TrainConfig(OptimConfig(lr=0.1, name="sgd"), epochs=5, ks=[1, 5])
    assert isinstance(config.optim, OptimConfig)


def test_unknown_key_in_a_file_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(
        ConfigError, match=r"unknown config key 'optim.learning_rate' in .*bad.yaml"
    ):
        load_config(TrainConfig, path)


def test_unknown_override_suggests_the_right_key():
    with pytest.raises(ConfigError, match=r"'optim.lrr'.*Did you mean: 'lr'"):
        load_config(TrainConfig, None, ["optim.lrr=1"])


@pytest.mark.parametrize("override", ["epochs=abc", "epochs=2.5", "optim.lr=fast"])
def test_wrong_type_names_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"wrong type for config key '{key}'"):
        load_config(TrainConfig, None, [override])


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match=r"key\.sub=value"):
        load_config(TrainConfig, None, ["epochs"])


def test_missing_file_and_non_mapping_file_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainConfig, tmp_path / "absent.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(TrainConfig, path)


def test_post_init_validation_runs_on_merged_values():
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        load_config(TrainConfig, None, ["epochs=0"])


def test_saved_config_loads_back_identically(tmp_path):
    config = load_config(TrainConfig, None, ["optim.name=adam", "epochs=3"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(TrainConfig, tmp_path / "config.yaml") == config
    assert to_dict(config)["optim"] == {"lr": 0.3, "name": "adam"}


def test_config_differences_lists_dotted_keys():
    old = {"optim": {"lr": 0.3, "name": "sgd"}, "epochs": 1}
    new = {"optim": {"lr": 0.1, "name": "sgd"}, "epochs": 1, "seed": 0}
    assert config_differences(old, new) == ["optim.lr: 0.3 -> 0.1", "seed: None -> 0"]
