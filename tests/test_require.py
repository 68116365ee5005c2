"""`require` skips locally and fails under CI=true, so CI cannot pass by skipping."""

from __future__ import annotations

import pytest

from tests.conftest import require


def test_met_requirement_does_nothing(monkeypatch):
    monkeypatch.setenv("CI", "true")
    require(True, "unused")


def test_missing_requirement_skips_locally(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no widget"):
        require(False, "no widget")


def test_missing_requirement_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no widget"):
        require(False, "no widget")
