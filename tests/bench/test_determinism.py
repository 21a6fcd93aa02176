import math

from bench.determinism import check_convergence, classify_probe, validity


def probe(losses, fps=None, params="p"):
    return {"steps": len(losses), "losses": losses, "fingerprints": fps or [f"f{i}" for i in range(len(losses))], "params_sha256": params}


def test_identical_runs_are_bitwise():
    a = probe([5.0, 4.5, 4.2])
    assert classify_probe(a, probe([5.0, 4.5, 4.2]), rel_tol=1e-4)["class"] == "bitwise"


def test_small_loss_noise_with_same_data_is_close_and_states_tolerance():
    out = classify_probe(probe([5.0, 4.5]), probe([5.0, 4.50001], params="q"), rel_tol=1e-4)
    assert out["class"] == "close"
    assert out["rel_tol"] == 1e-4
    assert 0 < out["max_rel_loss_diff"] < 1e-4


def test_different_data_or_large_difference_is_divergent():
    assert classify_probe(probe([5.0, 4.5]), probe([5.0, 4.5], fps=["f0", "zz"]), rel_tol=1e-4)["class"] == "divergent"
    assert classify_probe(probe([5.0, 4.5]), probe([5.0, 4.9]), rel_tol=1e-4)["class"] == "divergent"
    assert classify_probe(probe([5.0, math.nan]), probe([5.0, 4.5]), rel_tol=1e-4)["class"] == "divergent"


def test_short_probe_is_divergent_and_missing_is_not_checked():
    main = probe([5.0, 4.5, 4.2])
    assert classify_probe(main, probe([5.0, 4.5]), rel_tol=1e-4)["class"] == "divergent"
    assert classify_probe(main, None, rel_tol=1e-4)["class"] == "not_checked"


def test_convergence_band_and_validity():
    ok = check_convergence(1.2, (1.0, 1.5), "recorded runs")
    bad = check_convergence(1.7, (1.0, 1.5), "recorded runs")
    assert ok["ok"] and not bad["ok"] and "outside" in bad["reason"]
    assert check_convergence(1.2, (0.0, math.inf), "none")["band"] == [0.0, None]  # JSON-safe
    assert validity({"class": "bitwise"}, ok) == (True, [])
    valid, problems = validity({"class": "divergent", "reason": "x"}, bad)
    assert not valid and len(problems) == 2
