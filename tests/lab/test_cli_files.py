"""The command line on the user's own .npy files: tune, check-knobs, evaluate, bad files."""
import json

import numpy as np
import pytest

from invgc_faiss.lab.cli import main
from invgc_faiss.lab.synthetic import make_cone_pairs


@pytest.fixture(scope="module")
def hubby():
    """Paired cone data on which InvGC helps a lot."""
    return make_cone_pairs(n_test=300, n_bank=1500, d=32, seed=4)


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


def test_cli_tune_compares_peers_on_the_held_out_split(files, capsys):
    assert main(["tune", "--query-bank", files["query_bank"], "--gallery-bank",
                 files["gallery_bank"], "--forms", "projection", "--peers", "nnn"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line]
    assert "nnn" in rows and "projection" in rows


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
              "--methods", "plain", "invgc_default", "renorm"]
    out = tmp_path / "eval.json"
    assert main(common + ["--json", str(out), "--csv", str(tmp_path / "e.csv")]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["direction"] for r in rows} == {"query->gallery", "gallery->query"}
    by = {(r["direction"], r["method"]): r for r in rows}
    # generated pairs in two offset cones: renormalization gains; their query bank's shared
    # direction is under the defaults' threshold, so the defaults are the plain index
    assert by[("query->gallery", "renorm")]["R@1"] > by[("query->gallery", "plain")]["R@1"]
    assert by[("query->gallery", "invgc_default")]["R@1"] == by[("query->gallery", "plain")]["R@1"]
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


def test_cli_diagnose_reports_each_side_and_a_route(files, tmp_path, capsys):
    """The rule's three routes: a narrow cone -> the InvGC defaults; the generated pairs (two
    offset cones, shared direction under the threshold) -> renormalization; the query bank
    centred -> plain faiss."""
    from tests.helpers.data import cone
    np.save(tmp_path / "narrow.npy", cone(np.random.default_rng(0), 2000, 32, 0.15))
    assert main(["diagnose", "--query-bank", str(tmp_path / "narrow.npy")]) == 0
    assert "route: the InvGC defaults" in capsys.readouterr().out
    assert main(["diagnose", "--query-bank", files["query_bank"], "--gallery",
                 files["gallery"]]) == 0
    out = capsys.readouterr().out
    assert "query bank" in out and "gallery" in out and "k-occurrence skewness" in out
    assert "route: renormalization: InvGCIndex" in out
    bank = np.load(files["query_bank"]).astype(np.float64)
    centred = bank - bank.mean(axis=0)
    np.save(tmp_path / "centred.npy", (centred / np.linalg.norm(centred, axis=1,
                                                               keepdims=True)).astype(np.float32))
    assert main(["diagnose", "--query-bank", str(tmp_path / "centred.npy")]) == 0
    out = capsys.readouterr().out
    assert "route: plain faiss" in out and "no cone" in out


@pytest.mark.parametrize("problem,match", [("missing", "cannot be read"),
                                           ("not_unit", "unit L2 norm"),
                                           ("dim", "dimension 31")])
def test_cli_diagnose_bad_files_get_one_line_and_status_2(files, tmp_path, capsys, problem,
                                                          match):
    args = ["diagnose", "--query-bank", files["query_bank"], "--gallery", files["gallery"]]
    if problem == "missing":
        args[2] += ".gone"
    elif problem == "not_unit":
        np.save(files["query_bank"], np.load(files["query_bank"]) * 2)
    else:
        np.save(files["gallery"], np.load(files["gallery"])[:, :31])
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0]
