"""The command line on generated data (the real-data path is in test_datasets)."""
import csv
import importlib.util
import json

import pytest

from invgc_faiss.lab.cli import main


def run(tmp_path, capsys, *extra):
    argv = ["demo", "--synthetic", "--n-test", "150", "--n-bank", "600", "--dim", "16",
            "--methods", "plain", "nnn", "invgc_localadj",
            "--json", str(tmp_path / "t.json"), "--csv", str(tmp_path / "t.csv"), *extra]
    assert main(argv) == 0
    return capsys.readouterr().out


def test_demo_synthetic_says_so_and_saves_tables(tmp_path, capsys):
    out = run(tmp_path, capsys)
    assert out.splitlines()[0].startswith("data: SYNTHETIC")
    saved = json.loads((tmp_path / "t.json").read_text())
    assert [(r["direction"], r["method"]) for r in saved["rows"]] == [
        (d, m) for d in ("A->B", "B->A") for m in ("plain", "nnn", "invgc_localadj")]
    for row in saved["rows"]:
        assert {"R@1", "R@5", "R@10", "MdR", "MnR", "RSUM", "k_skewness", "antihub_rate",
                "add_s", "search_s", "params"} <= set(row)
        same = [r for r in saved["rows"] if r["method"] == row["method"]]
        assert row["RSUM"] == pytest.approx(sum(r["R@1"] + r["R@5"] + r["R@10"] for r in same))
    with open(tmp_path / "t.csv") as f:
        assert len(list(csv.DictReader(f))) == 6
    assert "invgc_localadj" in out and "r_q" in out  # chosen parameters are printed


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="plot extra")
def test_plot_is_written(tmp_path, capsys):
    run(tmp_path, capsys, "--plot", str(tmp_path / "k.png"))
    assert (tmp_path / "k.png").read_bytes()[:4] == b"\x89PNG"


def test_real_data_demo_path_runs_on_a_split_it_is_given(monkeypatch, capsys):
    """``python -m invgc_faiss demo`` (the README's main command) down to the table, with the
    embedding step replaced by generated pairs."""
    from invgc_faiss.lab import cli
    from invgc_faiss.lab.synthetic import make_cone_pairs

    monkeypatch.setattr(cli, "load_split", lambda args, lang: make_cone_pairs(100, 400, 16, seed=3))
    assert main(["demo", "--methods", "plain", "invgc_default"]) == 0
    out = capsys.readouterr().out
    assert "invgc_default" in out and "eng->deu" in out
