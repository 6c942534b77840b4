"""Fuzzing of every parser that reads outside input (issue 9 item 1; DESIGN.md section 8).

- ``targets``: one target per parser. ``Target.check(data)`` runs the parser on one input and
  raises :class:`tests.fuzz.targets.ContractViolation` when the parser breaks its contract
  (an exception other than the documented one, an uncounted drop, a log line at ERROR).
- ``mutate``: structure-aware mutation (byte, length, line and token operations), shared by
  Hypothesis (bounded, ``tests/unit/test_fuzz_bounded.py``) and atheris (long, ``python3 -m
  tests.fuzz``), so an input found by one engine replays in the other.

This package imports no product code itself: the atheris worker imports the targets under
coverage instrumentation.
"""
