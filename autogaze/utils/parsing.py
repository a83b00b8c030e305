"""Parse upstream's string-encoded config values once, at the config boundary.

Upstream encodes lists as strings: ``scales=32+64+112+224``, ``loss_weights=1+0.3+0.3``,
``dataset.root='a,b'``, ``dirichlet.alpha='10,3,3'``. Everything inside autogaze works on the typed
values these functions return; nothing downstream splits strings again.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable, Sequence


class ConfigError(ValueError):
    """A config value that breaks a rule. The message names key, value, rule and fix."""

    def __init__(self, key: str, value: Any, rule: str, fix: str):
        self.key, self.value, self.rule, self.fix = key, value, rule, fix
        super().__init__(f"invalid config `{key}={value!r}`: {rule}. Fix: {fix}")


def _split(value: Any, sep: str) -> list[str]:
    if isinstance(value, str):
        return [p.strip() for p in value.strip().strip("'\"").split(sep) if p.strip()]
    if isinstance(value, (int, float)):
        return [str(value)]
    if isinstance(value, Iterable):
        return [str(v).strip() for v in value]
    raise TypeError(type(value))


def parse_int_list(key: str, value: Any, sep: str = "+") -> list[int]:
    """``'32+64+112+224'`` / ``224`` / ``[32, 64]`` -> ``[32, 64, ...]``."""
    try:
        out = [int(p) for p in _split(value, sep)]
    except (TypeError, ValueError):
        raise ConfigError(key, value, f"must be integers joined by '{sep}' or a list of integers",
                          f"write e.g. {key}=32{sep}64{sep}112{sep}224") from None
    if not out:
        raise ConfigError(key, value, "must not be empty", f"give at least one value, e.g. {key}=224")
    return out


def parse_float_list(key: str, value: Any, sep: str = "+") -> list[float]:
    """``'1+0.3+0.3'`` / ``'10,3,3'`` (sep=',') / ``0.5`` / ``[1.0]`` -> list of floats."""
    try:
        out = [float(p) for p in _split(value, sep)]
    except (TypeError, ValueError):
        raise ConfigError(key, value, f"must be numbers joined by '{sep}' or a list of numbers",
                          f"write e.g. {key}=1{sep}0.3") from None
    if not out:
        raise ConfigError(key, value, "must not be empty", "give at least one number")
    return out


def parse_str_list(key: str, value: Any, sep: str = "+") -> list[str]:
    """``'l1+dinov2_reg'`` -> ``['l1', 'dinov2_reg']``; ``'a,b'`` with sep=',' -> ``['a', 'b']``."""
    if value is None:
        return []
    try:
        return _split(value, sep)
    except TypeError:
        raise ConfigError(key, value, f"must be a string joined by '{sep}' or a list of strings",
                          f"write e.g. {key}=a{sep}b") from None


def parse_scales(key: str, value: Any) -> list[int]:
    """Scales sorted ascending (upstream sorts them; the token layout depends on that order)."""
    scales = sorted(parse_int_list(key, value))
    if any(s <= 0 for s in scales) or len(set(scales)) != len(scales):
        raise ConfigError(key, value, "scales must be distinct positive integers", f"e.g. {key}=32+64+112+224")
    return scales


def check_choice(key: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else a ConfigError suggesting the closest."""
    if value in choices:
        return value
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(key, value, f"must be one of {list(choices)}", f"{hint}set {key}=<one of those>")


def check_keys(prefix: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Reject unknown keys under ``prefix`` (typos otherwise pass silently)."""
    known = list(known)
    for k in given:
        if k not in known:
            close = difflib.get_close_matches(k, known, n=1)
            hint = f"did you mean {prefix}.{close[0]}?" if close else f"valid keys: {sorted(known)}"
            raise ConfigError(f"{prefix}.{k}", "<unknown key>", "no such config key", hint)


def parse_single_scale(key: str, value, what: str) -> int:
    """One frame side from a scales value (``224``, ``"224"`` or ``[224]``); ``what`` names the
    module that takes a single size, for the error."""
    sides = parse_int_list(key, value)
    if len(sides) != 1:
        raise ConfigError(key, value, f"{what} takes one frame size", f"give one value, e.g. {key}=224")
    return sides[0]
