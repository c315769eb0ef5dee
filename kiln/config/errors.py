"""Exceptions raised by kiln.config.

``ConfigError`` is a ``ValueError`` so existing ``except ValueError`` code keeps working;
``ConfigKeyError`` is also a ``KeyError`` (a missing key) but prints its message without the
quotes ``KeyError`` normally adds, because the message is meant for people.
"""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """A config file or an override is invalid; the message names the file/key and the fix."""


class ConfigKeyError(KeyError, ConfigError):
    """A key does not exist in a config (the message lists close matches)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class FrozenConfigError(AttributeError):
    """A write to a frozen (immutable) config."""


def close_matches(key: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates that look like ``key`` (typos, case, substrings)."""
    import difflib  # only on error paths

    cands = [str(c) for c in candidates]
    found = difflib.get_close_matches(key, cands, n=n, cutoff=0.6)
    if len(found) < n:
        low = key.lower()
        for c in cands:
            if c not in found and (c.lower() == low or (len(low) > 2 and (low in c.lower()))):
                found.append(c)
            if len(found) >= n:
                break
    return found


def did_you_mean(key: str, candidates: Iterable[str]) -> str:
    """`` Did you mean 'a', 'b'?`` or an empty string when nothing is close."""
    found = close_matches(key, candidates)
    return f" Did you mean: {', '.join(repr(f) for f in found)}?" if found else ""


def yaml_msg(exc: Exception) -> str:
    """A PyYAML error text with its ``"<unicode string>"`` stream name replaced."""
    return str(exc).replace('"<unicode string>"', "the file").replace("\n", " ")


def invalid_yaml(filename: str, exc: Exception) -> ConfigError:
    """The ``ConfigError`` for a PyYAML error in ``filename``, with the line number when known."""
    mark = getattr(exc, "problem_mark", None)
    line = f", line {mark.line + 1}" if mark is not None else ""
    return ConfigError(f"{filename}{line}: invalid YAML: {yaml_msg(exc)}")
