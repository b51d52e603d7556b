"""Few-shot episodes and label-fraction probes: known cases, hand computations, sampling, bad input."""
from __future__ import annotations

import math

import pytest
import torch

from selfsup.errors import ConfigError, DataError
from selfsup.evaluation.fewshot import few_shot, fraction_subset, label_fractions
from selfsup.evaluation.linear import fit_logistic, linear_probe


def separable(n_per_class: int, k: int, seed: int):
    """One-hot class codes (K-d) plus noise 100x smaller than the code, labels with arbitrary values."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(k).repeat(n_per_class)
    x = torch.eye(k)[y] + 0.01 * torch.randn(len(y), k, generator=g)
    return x, torch.tensor([7, -3, 42, 0, 11, 5])[y]


def random_split(n_train: int, n_test: int, k: int, d: int = 16):
    """Gaussian features, labels independent of them; test classes exactly balanced."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(n_train, d, generator=g), torch.arange(n_train) % k,
            torch.randn(n_test, d, generator=g), torch.arange(n_test) % k)


# ---------------------------------------------------------------- few-shot: known cases

def test_few_shot_separable_features_are_perfect():
    train_x, train_y = separable(20, 6, seed=0)
    test_x, test_y = separable(30, 6, seed=1)
    result = few_shot(train_x, train_y, test_x, test_y, shots=(1, 5, 10), episodes=5)
    assert set(result) == {"1shot", "1shot_ci95", "5shot", "5shot_ci95", "10shot", "10shot_ci95", "episodes"}
    for n in (1, 5, 10):
        assert result[f"{n}shot"] == 1.0 and result[f"{n}shot_ci95"] == 0.0
    assert result["episodes"] == 5.0
    assert few_shot(train_x, train_y, test_x, test_y, shots=1, episodes=3, queries_per_class=4)["1shot"] == 1.0


def test_few_shot_random_features_give_chance():
    # Test labels independent of the features and exactly balanced: every classifier's expected
    # accuracy is 1/K. One classifier's accuracy on M queries has std sqrt(p (1 - p) / M) = 0.0097
    # (K = 4, M = 2000); the mean over episodes, on the same queries, cannot spread more: 4 std.
    train_x, train_y, test_x, test_y = random_split(400, 2000, k=4)
    result = few_shot(train_x, train_y, test_x, test_y, shots=(1, 10), episodes=10)
    for n in (1, 10):
        assert abs(result[f"{n}shot"] - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 2000)


def test_few_shot_on_digits_learns_and_improves_with_shots(digits):
    result = few_shot(*digits, shots=(1, 5, 10), episodes=20)
    # Measured: 1-shot 0.554, 5-shot 0.825, 10-shot 0.883 (chance 0.1; 100 episodes: 0.559, 0.828, 0.882).
    assert result["5shot"] > 0.75
    assert result["10shot"] >= result["5shot"] >= result["1shot"] > 0.4


# ---------------------------------------------------------------- few-shot: episodes

def test_episodes_sample_n_per_class_differ_and_repeat_with_the_seed():
    train_x, train_y, test_x, test_y = random_split(200, 60, k=5)
    result, episodes = few_shot(train_x, train_y, test_x, test_y, shots=(1, 3), episodes=6,
                                queries_per_class=2, return_episodes=True)
    for n in (1, 3):
        support, query = episodes[n]["support"], episodes[n]["query"]
        assert support.shape == (6, 5 * n) and query.shape == (6, 5 * 2)
        for e in range(6):
            assert torch.bincount(train_y[support[e]], minlength=5).tolist() == [n] * 5
            assert len(set(support[e].tolist())) == 5 * n  # without replacement
            assert torch.bincount(test_y[query[e]], minlength=5).tolist() == [2] * 5
        assert len({tuple(s.tolist()) for s in support}) == 6  # every episode differs
    again, episodes_again = few_shot(train_x, train_y, test_x, test_y, shots=(1, 3), episodes=6,
                                     queries_per_class=2, return_episodes=True)
    assert again == result and torch.equal(episodes_again[3]["support"], episodes[3]["support"])
    # The 3-shot episodes do not depend on which other shots are asked for; another seed differs.
    alone = few_shot(train_x, train_y, test_x, test_y, shots=(3,), episodes=6, queries_per_class=2,
                     return_episodes=True)[1]
    assert torch.equal(alone[3]["support"], episodes[3]["support"])
    other = few_shot(train_x, train_y, test_x, test_y, shots=(3,), episodes=6, seed=1, return_episodes=True)[1]
    assert not torch.equal(other[3]["support"], episodes[3]["support"])


def test_episode_accuracies_and_ci_match_a_direct_computation():
    train_x, train_y, test_x, test_y = random_split(120, 300, k=3, d=8)
    train_x = train_x + 1.5 * torch.eye(8)[train_y]  # some signal, so accuracies vary
    test_x = test_x + 1.5 * torch.eye(8)[test_y]
    result, episodes = few_shot(train_x, train_y, test_x, test_y, shots=(2,), episodes=8, lam=1e-2,
                                max_iter=10, return_episodes=True)
    accs = episodes[2]["accuracy"].tolist()
    mean, std = train_x.mean(0), train_x.std(0)  # the statistics of the whole (unlabelled) train set
    for e in (0, 5):  # refit on the support, standardize the queries explicitly, count hits
        support = episodes[2]["support"][e]
        x, y = train_x[support], train_y[support]
        weight, bias, _ = fit_logistic((x - mean) / std, y, 3, 1e-2, max_iter=10)
        hits = sum(int(((test_x[i] - mean) / std @ weight.T + bias).argmax()) == int(test_y[i]) for i in range(300))
        assert abs(accs[e] - hits / 300) <= 1 / 300  # at most one near-tie may round the other way
    mean = sum(accs) / 8
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / 7)
    assert result["2shot"] == pytest.approx(mean, abs=1e-12)
    assert result["2shot_ci95"] == pytest.approx(1.96 * std / math.sqrt(8), rel=1e-9)
    assert result["2shot_ci95"] > 0
    assert math.isnan(few_shot(train_x, train_y, test_x, test_y, shots=(2,), episodes=1)["2shot_ci95"])


# ---------------------------------------------------------------- label fractions

def test_fraction_subset_sizes_nesting_and_seeds():
    counts = {42: 200, -1: 50, 7: 7, 3: 3}
    labels = torch.cat([torch.full((c,), label) for label, c in counts.items()])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    # max(1, round(fraction * count)), halves up: 1% of 50 = 0.5 -> 1, 25% of 50 = 12.5 -> 13.
    expected = {0.01: [2, 1, 1, 1], 0.1: [20, 5, 1, 1], 0.25: [50, 13, 2, 1], 1.0: [200, 50, 7, 3]}
    subsets = {}
    for fraction, sizes in expected.items():
        index = fraction_subset(labels, fraction, seed=5)
        assert [int((labels[index] == label).sum()) for label in counts] == sizes
        assert torch.equal(index, index.sort().values) and len(set(index.tolist())) == len(index)
        assert torch.equal(index, fraction_subset(labels, fraction, seed=5))
        subsets[fraction] = set(index.tolist())
    assert subsets[0.01] <= subsets[0.1] <= subsets[0.25] <= subsets[1.0] == set(range(len(labels)))
    assert subsets[0.1] != set(fraction_subset(labels, 0.1, seed=6).tolist())


def test_label_fractions_separable_random_and_full_probe():
    train_x, train_y = separable(40, 6, seed=0)
    test_x, test_y = separable(20, 6, seed=1)
    result = label_fractions(train_x, train_y, test_x, test_y, fractions=(0.01, 0.1, 1.0))
    assert result == {"linear@1%": 1.0, "n@1%": 6.0, "linear@10%": 1.0, "n@10%": 24.0,
                      "linear@100%": 1.0, "n@100%": 240.0}
    # Independent labels: chance 1/K within 4 std of one classifier's accuracy on M = 2000 (0.0097).
    train_x, train_y, test_x, test_y = random_split(800, 2000, k=4)
    result = label_fractions(train_x, train_y, test_x, test_y, fractions=(0.05, 1.0), lambdas=(1e-2,))
    for pct in ("5", "100"):
        assert abs(result[f"linear@{pct}%"] - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 2000)
    # 100% is the linear probe on the whole train set, to the bit.
    assert result["linear@100%"] == linear_probe(train_x, train_y, test_x, test_y, lambdas=(1e-2,))["accuracy"]


# ---------------------------------------------------------------- bad input

def test_bad_input_says_what_and_how():
    train_x, train_y = separable(4, 3, seed=0)
    train_x, train_y = train_x[:-1], train_y[:-1]  # the last class (label 42) keeps 3 examples
    with pytest.raises(ConfigError, match=r"shots=5 but class 42 has only 3 train examples.*shots <= 3"):
        few_shot(train_x, train_y, train_x, train_y, shots=(1, 5))
    with pytest.raises(ConfigError, match="queries_per_class=4 but class 42 has only 3 test"):
        few_shot(train_x, train_y, train_x, train_y, shots=(1,), queries_per_class=4)
    for shots in ((), (0,), (2.5,)):
        with pytest.raises(ConfigError, match="shots must be positive integers"):
            few_shot(train_x, train_y, train_x, train_y, shots=shots)
    with pytest.raises(DataError, match="test label 99 does not occur"):
        few_shot(train_x, train_y, train_x[:1], torch.tensor([99]), shots=(1,))
    with pytest.raises(DataError, match=r"test features \(0 rows\) and labels \(0\)"):
        few_shot(train_x, train_y, train_x[:0], train_y[:0], shots=(1,))
    with pytest.raises(ConfigError, match="no label fractions"):
        label_fractions(train_x, train_y, train_x, train_y, fractions=())
    for fraction in (0.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ConfigError, match=r"label fraction .* is not in \(0, 1\]"):
            label_fractions(train_x, train_y, train_x, train_y, fractions=(0.1, fraction))
        with pytest.raises(ConfigError, match="not in"):
            fraction_subset(train_y, fraction, seed=0)
    with pytest.raises(ConfigError, match="unknown linear probe option 'lambda'. Did you mean 'lambdas'"):
        label_fractions(train_x, train_y, train_x, train_y, **{"lambda": 1e-3})


# ---------------------------------------------------------------- the protocols share one linear fit

def test_linear_and_fractions_protocols_share_one_fit_with_the_direct_results(digits, monkeypatch):
    from selfsup.evaluation import EvalContext, linear
    from selfsup.evaluation.protocols.fractions import fractions_protocol
    from selfsup.evaluation.protocols.linear import linear_protocol

    train_x, train_y, test_x, test_y = digits
    ctx = EvalContext(encoder=None, train=None)
    ctx._features = {"train": train_x, "test": test_x}
    monkeypatch.setattr(EvalContext, "labels", lambda self, split: train_y if split == "train" else test_y)
    calls = []
    real = linear.linear_probe
    monkeypatch.setattr(linear, "linear_probe", lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
    got_linear = linear_protocol(ctx)
    got_fractions = fractions_protocol(ctx, fractions=(0.1, 1.0))
    assert got_linear == real(train_x, train_y, test_x, test_y, seed=0)
    assert got_fractions == label_fractions(train_x, train_y, test_x, test_y, fractions=(0.1, 1.0), seed=0)
    assert ctx.linear_model() is ctx.linear_fit()[1]
    assert calls == [1200]  # the whole-train fit ran once; the 10% probe went through label_fractions
