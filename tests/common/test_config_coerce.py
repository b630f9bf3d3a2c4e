"""Config values of an integer setting: whole numbers in any spelling TOML or a flag gives are
taken; a fraction, an infinity, NaN or a boolean is a ConfigError naming the setting."""

from __future__ import annotations

import dataclasses

import pytest

from orbitmq.common.config import ConfigError, from_dict


@dataclasses.dataclass
class Small:
    n: int = 1


@pytest.mark.parametrize("value, expected", [(7, 7), ("12", 12), (1e6, 1_000_000), (-3.0, -3)])
def test_whole_numbers_are_taken(value, expected) -> None:
    assert from_dict(Small, {"n": value}).n == expected


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 1.5, True, "x", [1]])
def test_anything_else_is_a_config_error(value) -> None:
    with pytest.raises(ConfigError, match="n must be an integer"):
        from_dict(Small, {"n": value}, where="small.toml")
