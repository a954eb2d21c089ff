"""SQNConfig validates itself: each bad value names the field and the allowed range.

As in Gymnasium, a value of the wrong type raises TypeError and a wrong value of the right type ValueError.
"""

import pytest

from sqn_agents import SQNConfig


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gamma": 1.0}, r"gamma must be in \[0.0, 1.0\)"),
        ({"gamma": -0.1}, "gamma must be in"),
        ({"tau": 0.0}, r"tau must be in \(0.0, 1.0\]"),
        ({"learning_rate": -1e-3}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0"),
        ({"alpha_learning_rate": 0}, "alpha_learning_rate must be"),
        ({"initial_alpha": 0.0}, "initial_alpha must be"),
        ({"target_entropy_ratio": 1.0}, r"target_entropy_ratio must be in \(0.0, 1.0\)"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"buffer_size": 10, "batch_size": 32}, r"batch_size \(32\) must not exceed buffer_size \(10\)"),
        ({"learning_starts": -1}, "learning_starts must be an integer >= 0"),
        ({"train_freq": 0}, "train_freq must be an integer >= 1"),
        ({"hidden_sizes": ()}, "hidden_sizes must be a non-empty tuple"),
        ({"hidden_sizes": (64, 0)}, "hidden_sizes must be"),
        ({"max_grad_norm": -1.0}, "max_grad_norm must be"),
        ({"loss": "l1"}, "loss must be one of"),
        ({"multidiscrete_target": "max"}, "multidiscrete_target must be one of"),
        ({"replay": "prioritized"}, "replay must be one of"),
        ({"n_step": 0}, "n_step must be an integer >= 1"),
        ({"target_update_interval": 0}, "target_update_interval must be an integer >= 1"),
        ({"shift_pad": 0}, "shift_pad must be an integer >= 1"),
        ({"munchausen_scale": -0.1}, r"munchausen_scale must be in \[0.0, inf\)"),
        ({"munchausen_clip": 0.0}, r"munchausen_clip must be in \(-inf, 0.0\)"),
        ({"augmentation": "crop"}, "augmentation must be one of"),
        ({"precision": "fp16"}, "precision must be one of"),
    ],
)
def test_bad_values_raise_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        SQNConfig(**overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gamma": "0.9"}, r"gamma must be a number in \[0.0, 1.0\), got '0.9'"),
        ({"tau": None}, "tau must be a number in"),
        ({"learning_rate": "1e-3"}, "learning_rate must be a finite number > 0"),
        ({"initial_alpha": True}, "initial_alpha must be a finite number > 0"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"batch_size": "64"}, "batch_size must be an integer >= 1, got '64'"),
        ({"gradient_steps": True}, "gradient_steps must be an integer"),
        ({"hidden_sizes": 64}, "hidden_sizes must be a non-empty tuple of positive ints"),
        ({"hidden_sizes": (64, 2.0)}, "hidden_sizes must be a non-empty tuple of positive ints"),
        ({"loss": None}, "loss must be one of"),
        ({"replay": ["uniform"]}, "replay must be one of"),
        ({"autotune_alpha": "yes"}, "autotune_alpha must be a bool"),
        ({"shared_alpha": 1}, "shared_alpha must be a bool"),
        ({"replay_on_device": "cuda"}, "replay_on_device must be a bool, got 'cuda'"),
    ],
)
def test_values_of_the_wrong_type_raise_type_error_naming_the_field(overrides, message):
    with pytest.raises(TypeError, match=message):
        SQNConfig(**overrides)


def test_defaults_are_valid_and_round_trip_through_dict():
    cfg = SQNConfig(hidden_sizes=[32, 32], max_grad_norm=None)
    assert cfg.hidden_sizes == (32, 32)
    assert SQNConfig.from_dict(cfg.to_dict()) == cfg


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown SQNConfig field\(s\) \['gama'\]"):
        SQNConfig.from_dict({"gama": 0.9})


def test_a_config_saved_before_n_step_existed_keeps_one_step_returns():
    old = SQNConfig().to_dict()
    del old["n_step"]
    assert SQNConfig.from_dict(old).n_step == 1
    assert SQNConfig.from_dict(SQNConfig().to_dict()).n_step == SQNConfig().n_step == 3


def test_a_config_saved_before_munchausen_existed_keeps_it_off():
    old = SQNConfig().to_dict()
    del old["munchausen_scale"], old["munchausen_clip"]
    assert SQNConfig.from_dict(old).munchausen_scale == 0.0
    assert SQNConfig.from_dict(SQNConfig().to_dict()).munchausen_scale == SQNConfig().munchausen_scale == 0.9
