"""invgc_faiss.tune: held-out tuning on paired banks, the do-no-harm rule, the CLI on files."""
import json

import faiss
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import invgc_faiss
from conftest import random_unit
from invgc_faiss import InvGCIndex
from invgc_faiss.lab.cli import main
from invgc_faiss.lab.synthetic import make_cone_pairs

SMALL_GRID = {"projection": {"rho_g": (0.0, 1.0), "rho_q": (0.0, 1.0), "pool_rate": (0.1, 0.2)},
              "paper": {"r_g": (0.0, 1.0), "r_q": (0.0, 1.5), "pool_rate": (0.05,)}}


@pytest.fixture(scope="module")
def hubby():
    """Paired cone data on which InvGC helps a lot."""
    return make_cone_pairs(n_test=300, n_bank=1500, d=32, seed=4)


def test_do_no_harm_picks_the_identity_where_correction_cannot_help():
    # the gallery bank is the query bank's own rows, spread evenly: plain is already perfect
    bank = random_unit(np.random.default_rng(0), 800, 32)
    result = invgc_faiss.tune(bank, bank, grid=SMALL_GRID, holdout=200)
    assert result.rows[0]["R@1"] == 100.0
    assert result.gain_interval[0] <= 0
    assert "do-no-harm" in result.decision
    assert all(result.params[name] == 0.0 for name in ("rho_g", "rho_q", "r_g", "r_q")
               if name in result.params)
    index = result.index()
    x = random_unit(np.random.default_rng(1), 50, 32)
    index.add(x)
    assert_array_equal(index.index.reconstruct_n(0, 50), x)  # the plain index, bit for bit


def test_tune_finds_the_gain_on_hubby_data_and_builds_that_index(hubby):
    s = hubby
    result = invgc_faiss.tune(s.bank_queries, s.bank_gallery, grid=SMALL_GRID, holdout=300,
                              methods=("nnn",))
    assert result.gain_interval[0] > 0 and result.gain > 5
    assert "helps" in result.decision
    by_method = {row["method"]: row for row in result.rows}
    assert set(by_method) == {"plain", "projection", "paper", "nnn"}
    assert by_method["projection"]["sum"] > by_method["plain"]["sum"]
    params = dict(result.params)
    built = result.index()
    by_hand = InvGCIndex(faiss.IndexFlatIP(32), query_bank=s.bank_queries,
                         gallery_bank=s.bank_gallery, **params)
    built.add(s.gallery)
    by_hand.add(s.gallery)
    assert_array_equal(built.index.reconstruct_n(0, built.ntotal),
                       by_hand.index.reconstruct_n(0, by_hand.ntotal))
    text = str(result)
    assert "gain over plain" in text and "chosen:" in text
    assert json.loads(json.dumps(result.to_dict()))["params"] == result.params


def test_held_out_score_of_the_chosen_form_matches_building_it(hubby):
    """The no-rebuild scoring inside tune equals searching a built index on the same split."""
    s = hubby
    grid = {"projection": {"rho_g": (0.0,), "rho_q": (1.0,), "pool_rate": (0.2,)}}
    result = invgc_faiss.tune(s.bank_queries, s.bank_gallery, forms=("projection",), grid=grid,
                              holdout=300, seed=3)
    order = np.random.default_rng(3).permutation(s.bank_queries.shape[0])
    held, rest = np.sort(order[:300]), np.sort(order[300:])
    index = InvGCIndex(faiss.IndexFlatIP(32), query_bank=s.bank_queries[rest],
                       gallery_bank=s.bank_gallery[rest], rho_g=0.0, rho_q=1.0, pool_rate=0.2)
    index.add(s.bank_gallery[held])
    _, I = index.search(s.bank_queries[held], 1)
    row = next(r for r in result.rows if r["method"] == "projection")
    assert row["R@1"] == pytest.approx(100 * np.mean(I[:, 0] == np.arange(300)))


def test_tuned_constructor_keeps_the_result(hubby):
    s = hubby
    index = InvGCIndex.tuned(faiss.IndexFlatIP(32), s.bank_queries, s.bank_gallery,
                             grid=SMALL_GRID, holdout=200, forms=("projection",))
    assert index.tune_result is not None
    assert index.correction.form_ == "projection"


@pytest.mark.parametrize("kwargs,match", [
    ({"gallery_bank": "short", "paired": True}, "need the same number of rows"),
    ({"paired": False, "methods": ("nnn",)}, "paired banks only"),
    ({"forms": ("other",)}, "forms must be"),
    ({"holdout": 10}, "at least 50 held-out"),
])
def test_tune_refuses_what_it_cannot_do(hubby, kwargs, match):
    s = hubby
    args = {"query_bank": s.bank_queries, "gallery_bank": s.bank_gallery}
    if kwargs.get("gallery_bank") == "short":
        kwargs = {**kwargs, "gallery_bank": s.bank_gallery[:-5]}
    with pytest.raises(ValueError, match=match):
        invgc_faiss.tune(**{**args, **kwargs})


def test_unpaired_banks_are_tuned_label_free_by_k_skewness(hubby):
    s = hubby
    result = invgc_faiss.tune(s.bank_queries[:1200], s.bank_gallery, grid=SMALL_GRID,
                              holdout=300)  # different row counts: unpaired
    assert result.gain is None and result.gain_interval is None
    assert "label-free" in result.decision and "k-skewness" in str(result)
    by_method = {row["method"]: row for row in result.rows}
    chosen = min(by_method["projection"]["k_skewness"], by_method["paper"]["k_skewness"])
    assert chosen < by_method["plain"]["k_skewness"]
    index = result.index()
    index.add(s.gallery)
    plain = faiss.IndexFlatIP(32)
    plain.add(s.gallery)
    hits = lambda idx: np.mean(idx.search(s.queries, 1)[1][:, 0] == np.arange(300))  # noqa: E731
    assert hits(index) > hits(plain)  # on this hubby data the least-hub setting also recalls more


# ---- the command line on arrays it writes ------------------------------------------------------

@pytest.fixture
def files(tmp_path, hubby):
    s = hubby
    paths = {}
    for name, array in (("queries", s.queries), ("gallery", s.gallery),
                        ("query_bank", s.bank_queries), ("gallery_bank", s.bank_gallery)):
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], array)
    return paths


def test_cli_tune_prints_the_table_and_saves_json(files, tmp_path, capsys):
    out = tmp_path / "tune.json"
    assert main(["tune", "--query-bank", files["query_bank"], "--gallery-bank",
                 files["gallery_bank"], "--json", str(out), "--forms", "projection"]) == 0
    printed = capsys.readouterr().out
    assert "gain over plain" in printed and "projection" in printed
    saved = json.loads(out.read_text())
    assert saved["params"]["form"] in ("projection",) and saved["n_holdout"] == 150


def test_cli_tune_on_unpaired_files_is_label_free(files, capsys):
    np.save(files["gallery_bank"], np.load(files["gallery_bank"])[:1300])
    assert main(["tune", "--query-bank", files["query_bank"], "--gallery-bank",
                 files["gallery_bank"], "--forms", "projection"]) == 0
    assert "label-free" in capsys.readouterr().out


def test_cli_check_knobs_prints_the_report_and_the_choice(files, tmp_path, capsys):
    out = tmp_path / "knobs.json"
    assert main(["check-knobs", "--query-bank", files["query_bank"], "--gallery-bank",
                 files["gallery_bank"], "--ladder", "IVF16,Flat", "--sample", "256",
                 "--params", '{"rho_q": 1.0, "pool_rate": 0.2}', "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "IVF16,Flat nprobe=1 " in printed and "sample 256" in printed
    assert "fastest within 0.5 R@1" in printed
    names = [row["name"] for row in json.loads(out.read_text())["rows"]]
    assert names[0] == "exact" and "IVF16,Flat nprobe=16" in names
    assert main(["check-knobs", "--query-bank", files["query_bank"], "--gallery-bank",
                 files["gallery_bank"]]) == 2
    assert "name settings to check" in capsys.readouterr().err


def test_cli_evaluate_on_files_both_directions_and_with_truth(files, tmp_path, capsys):
    common = ["evaluate", "--queries", files["queries"], "--gallery", files["gallery"],
              "--query-bank", files["query_bank"], "--gallery-bank", files["gallery_bank"],
              "--methods", "plain", "invgc_default", "nnn"]
    out = tmp_path / "eval.json"
    assert main(common + ["--json", str(out), "--csv", str(tmp_path / "e.csv")]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["direction"] for r in rows} == {"query->gallery", "gallery->query"}
    by = {(r["direction"], r["method"]): r for r in rows}
    assert by[("query->gallery", "invgc_default")]["R@1"] > by[("query->gallery", "plain")]["R@1"]
    truth = tmp_path / "truth.npy"
    perm = np.random.default_rng(0).permutation(300)
    np.save(files["gallery"], np.load(files["gallery"])[perm])  # gallery shuffled: truth needed
    np.save(truth, np.argsort(perm))
    assert main(common + ["--truth", str(truth), "--json", str(out)]) == 0
    shuffled = json.loads(out.read_text())["rows"]
    assert {r["direction"] for r in shuffled} == {"query->gallery"}
    for r in shuffled:
        assert r["R@1"] == pytest.approx(by[("query->gallery", r["method"])]["R@1"])


@pytest.mark.parametrize("problem,match", [
    ("nan", "queries.npy: array contains NaN"),
    ("rows", "must be paired"),
    ("dim", "gallery.npy: array has dimension 31"),
    ("dtype", "queries.npy: array must hold real numbers"),
    ("missing", "cannot be read"),
    ("not_unit", "queries.npy"),
])
def test_cli_bad_files_get_one_clear_line(files, capsys, problem, match):
    q = np.load(files["queries"])
    if problem == "nan":
        q[3, 2] = np.nan
        np.save(files["queries"], q)
    elif problem == "rows":
        np.save(files["gallery_bank"], np.load(files["gallery_bank"])[:-1])
    elif problem == "dim":
        np.save(files["gallery"], np.load(files["gallery"])[:, :31])
    elif problem == "dtype":
        np.save(files["queries"], q.astype(str))
    elif problem == "missing":
        files["queries"] = files["queries"] + ".gone"
    else:
        np.save(files["queries"], q * 3)
    code = main(["evaluate", "--queries", files["queries"], "--gallery", files["gallery"],
                 "--query-bank", files["query_bank"], "--gallery-bank", files["gallery_bank"],
                 "--methods", "plain"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ") and match in err[-1]
