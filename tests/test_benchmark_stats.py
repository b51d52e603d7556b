"""The statistics behind BENCHMARKS.md's verdicts (benchmarks/methods_table.py), checked by hand."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from methods_table import welch_test  # noqa: E402


def test_welch_test_against_the_hand_computation():
    a, b = [0.83, 0.84, 0.835], [0.82, 0.825, 0.81]
    # means 0.835 and 0.81833; sample variances 2.5e-5 and 5.8333e-5 (n - 1 = 2)
    sa, sb = 2.5e-5 / 3, (0.35e-3 / 6) / 3  # s^2 / n
    t = (0.835 - (0.82 + 0.825 + 0.81) / 3) / math.sqrt(sa + sb)
    assert t == pytest.approx(math.sqrt(10), rel=1e-9)  # 0.016667 / 0.0052705
    dof = (sa + sb) ** 2 / (sa ** 2 / 2 + sb ** 2 / 2)  # Welch-Satterthwaite: 3.448
    assert dof == pytest.approx(3.4483, abs=1e-4)
    diff, t_got, p_got = welch_test(a, b)
    assert diff == pytest.approx(0.0166667, abs=1e-6)
    assert t_got == pytest.approx(t, rel=1e-9)
    assert p_got == pytest.approx(2 * stats.t.sf(t, dof), rel=1e-9)
    assert 0.04 < p_got < 0.045  # significant at 5%, where the t > 2.8 rule of thumb for 4 dof agreed


def test_two_seeds_each_need_a_large_t():
    # t = 3.9 with 2 + 2 seeds has about 1-2 degrees of freedom: not significant
    diff, t, p = welch_test([0.8396, 0.8374], [0.8273, 0.8197])
    assert diff > 0 and t > 2.8 and p > 0.05


def test_samples_without_spread():
    assert welch_test([1.0, 1.0], [0.0, 0.0]) == (1.0, math.inf, 0.0)
    assert welch_test([0.5, 0.5], [0.5, 0.5]) == (0.0, 0.0, 1.0)
    diff, t, p = welch_test([0.2, 0.3], [0.0, 0.0])  # one side without spread: still a finite test
    assert math.isfinite(t) and 0 < p < 1


def test_holm_adjustment_by_hand():
    from methods_table import holm_adjust

    # sorted: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.03 (x1 = 0.03, raised to 0.04 to stay monotone)
    got = holm_adjust({"a": 0.03, "b": 0.01, "c": 0.02})
    assert got == pytest.approx({"a": 0.04, "b": 0.03, "c": 0.04})
    assert holm_adjust({"a": 0.6, "b": 0.5}) == pytest.approx({"a": 1.0, "b": 1.0})  # capped at 1
    assert holm_adjust({}) == {}
