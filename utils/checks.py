"""The value checks every config section uses, written once: each raises a ConfigError that names
the key, what was given and what is accepted."""

import json

from utils.errors import ConfigError


def _shown(value):
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def fail(key, expected, value):
    raise ConfigError(f"{key}: expected {expected}, got {_shown(value)}")


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(key, value, low=None, high=None):
    """An integer in [low, high] (either bound may be None)."""
    ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        bounds = [f">= {low}" if low is not None else "", f"<= {high}" if high is not None else ""]
        fail(key, " ".join(["an integer", " and ".join(b for b in bounds if b)]).strip(), value)
    return value


def positive_int(key, value):
    return integer(key, value, low=1)


def number(key, value, low=None, high=None, low_open=False):
    """A number in [low, high] ((low, high] with low_open)."""
    ok = is_number(value) and value == value  # not NaN
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"> {low}" if low_open else f">= {low}")
        if high is not None:
            bounds.append(f"<= {high}")
        fail(key, " ".join(["a number", " and ".join(bounds)]).strip(), value)
    return value


def fraction(key, value):
    """A share in [0, 1)."""
    if not (is_number(value) and 0 <= value < 1):
        fail(key, "a number in [0, 1)", value)
    return value


def one_of(key, value, accepted):
    if value not in accepted:
        fail(key, f"one of {', '.join(map(str, accepted))}", value)
    return value


def seed(key, value):
    """A random seed numpy and torch both take: an integer in [0, 2**32)."""
    return integer(key, value, low=0, high=2**32 - 1)
