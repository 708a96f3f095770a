"""Exceptions that carry the process exit code, so the CLI maps them without guessing.

Exit codes (GUIDE §5): 0 ok, 1 internal error, 2 usage, 3 bad input data/schema,
4 output exists, 5 quality gate failed.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """An exception's message cut to one line (the class name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class RecsynthError(Exception):
    """An expected failure with a one-line message for the user."""

    exit_code = 1


class UsageError(RecsynthError):
    exit_code = 2


class DataError(RecsynthError):
    """Input data or schema is unusable; the message names file, column and problem."""

    exit_code = 3


class OutputExistsError(RecsynthError):
    exit_code = 4


class GateFailed(RecsynthError):
    exit_code = 5
