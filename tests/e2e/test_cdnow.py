"""CDNOW, the real-world case: `pulse fit` and Pulse's P(alive) against the paper and `lifetimes`.

The data are the CDNOW sample that the `lifetimes` package ships (2,357 customers who first
bought in Q1 1997; whitespace-separated, no header: master id, sample id, date, CDs, dollars).
Calibration ends 1997-09-30, as in Fader, Hardie & Lee (2005). `lifetimes` is a dev dependency:
if it is missing this module fails to import, so the tests fail rather than skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import lifetimes  # noqa: F401  (a missing peer must fail the run, not skip it)
import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter
from lifetimes.datasets import load_cdnow_summary
from lifetimes.utils import summary_data_from_transaction_data

from streams.core import bgnbd
from streams.core.eventtime import parse_ts
from streams.core.facts import facts_at
from streams.core.policy import ChurnModel, Policy, load_churn_model, load_policy
from streams.core.state import UserState
from streams.offline.history import CsvMapping, read_history
from streams.offline.replay import Replayer

CDNOW = Path(str(resources.files("lifetimes.datasets") / "CDNOW_sample.txt"))
COLUMNS = ("master_id", "user_id", "ts", "cds", "amount")
UNTIL = "1997-09-30"  # the calibration's last day
CUT = "1997-10-01"  # `pulse fit --until`: the calibration is what comes before it
PAPER = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PARAMS = tuple(PAPER)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`pulse fit` run on the CDNOW sample as an operator would, and the file it wrote."""
    out = tmp_path_factory.mktemp("fit") / "cdnow-model.json"
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "fit",
            str(CDNOW),
            "--out",
            str(out),
            "--until",
            CUT,
            "--delimiter",
            "whitespace",
            "--columns",
            ",".join(COLUMNS),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    params: dict[str, Any] = json.loads(out.read_text())
    params["_stdout"] = done.stdout
    params["_path"] = out
    params["_wall_seconds"] = time.perf_counter() - started
    return params


@pytest.fixture(scope="module")
def peer_summary() -> pd.DataFrame:
    """lifetimes' own summary of the transactions: daily periods, scaled to weeks."""
    tx = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=list(COLUMNS), dtype=str)
    tx["date"] = pd.to_datetime(tx["ts"], format="%Y%m%d")
    summary = summary_data_from_transaction_data(
        tx, "user_id", "date", observation_period_end=UNTIL, freq="D"
    )
    summary["recency"] /= 7
    summary["T"] /= 7
    return summary


@pytest.fixture(scope="module")
def peer(peer_summary: pd.DataFrame) -> BetaGeoFitter:
    bgf = BetaGeoFitter()
    bgf.fit(peer_summary["frequency"], peer_summary["recency"], peer_summary["T"])
    return bgf


@pytest.fixture(scope="module")
def states() -> dict[str, UserState]:
    """Every customer's state after replaying the calibration period through the core."""
    until = parse_ts(UNTIL + "T00:00:00Z")
    mapping = CsvMapping(time="ts", delimiter="whitespace", columns=COLUMNS)
    records = sorted(read_history(CDNOW, mapping), key=lambda r: json.loads(r[1])["ts"])
    # 1997 is before the live pipeline's sanity floor for event times (2000-01-01).
    replayer = Replayer(Policy(min_valid_ts_ms=0), now_ms=int(time.time() * 1000))
    for offset, (key, value) in enumerate(records):
        if parse_ts(json.loads(value)["ts"]) <= until:
            replayer.feed(key, value, offset)
    run = replayer.finish(until)
    assert not run.dead_letters
    return run.states


def test_pulse_fit_reproduces_the_papers_parameters(fitted: dict[str, Any]) -> None:
    for name, value in PAPER.items():
        assert fitted[name] == pytest.approx(value, abs=1e-3), name
    assert fitted["customers"] == 2357
    assert fitted["repeat_active_days"] == 2457  # the paper's calibration-period repeat purchases
    assert fitted["log_likelihood"] == pytest.approx(-9582.4, abs=0.1)
    assert (fitted["unit"], fitted["calibration_end"]) == ("weeks", UNTIL)
    assert "r 0.2425" in fitted["_stdout"]
    load_churn_model(fitted["_path"])  # the file is what PULSE_CHURN_MODEL_FILE reads


def test_pulse_fit_agrees_with_lifetimes_beta_geo_fitter(
    fitted: dict[str, Any], peer: BetaGeoFitter
) -> None:
    for name in PARAMS:
        assert fitted[name] == pytest.approx(peer.params_[name], abs=1e-3), name
        assert peer.params_[name] == pytest.approx(PAPER[name], abs=1e-3), name


def test_the_summary_is_the_papers_to_its_printed_decimals(
    fitted: dict[str, Any], peer_summary: pd.DataFrame
) -> None:
    paper = load_cdnow_summary(index_col=[0])
    ours = peer_summary.set_axis(peer_summary.index.astype(int))
    joined = paper.join(ours, how="inner", suffixes=("", "_ours"))
    assert len(joined) == 2357
    assert (joined["frequency"] == joined["frequency_ours"]).all()
    for col in ("recency", "T"):
        assert (joined[col] - joined[col + "_ours"]).abs().max() <= 0.005 + 1e-9


def test_p_alive_matches_lifetimes_for_every_customer(
    fitted: dict[str, Any], peer: BetaGeoFitter, peer_summary: pd.DataFrame
) -> None:
    model = load_churn_model(fitted["_path"])
    x, t_x, T = (peer_summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    ours = np.array([bgnbd.p_alive(model, *row) for row in zip(x, t_x, T, strict=True)])
    # Each side with its own fitted parameters: the whole chain, fit and formula.
    theirs = peer.conditional_probability_alive(x, t_x, T)
    assert np.abs(ours - theirs).max() <= 1e-6
    # The same parameters on both sides: the formula alone.
    peer_params = ChurnModel(**{n: float(peer.params_[n]) for n in PARAMS})
    same = np.array([bgnbd.p_alive(peer_params, *row) for row in zip(x, t_x, T, strict=True)])
    assert np.abs(same - theirs).max() <= 1e-12


def test_replayed_state_gives_each_customer_lifetimes_summary_and_p_alive(
    states: dict[str, UserState],
    fitted: dict[str, Any],
    peer: BetaGeoFitter,
    peer_summary: pd.DataFrame,
) -> None:
    until = parse_ts(UNTIL + "T00:00:00Z")
    policy = Policy(min_valid_ts_ms=0, churn_model=load_churn_model(fitted["_path"]))
    assert set(states) == set(peer_summary.index)
    theirs = peer.conditional_probability_alive(
        peer_summary["frequency"], peer_summary["recency"], peer_summary["T"]
    )
    for (user, row), expected_p in zip(peer_summary.iterrows(), theirs, strict=True):
        summary = bgnbd.state_summary(states[str(user)], until)
        assert summary is not None
        expected = (row["frequency"], row["recency"], row["T"])
        assert summary == pytest.approx(expected, abs=1e-12), user
        # What the risk score uses: the facts taken from the state at the calibration end.
        assert facts_at(states[str(user)], until, policy).p_alive == pytest.approx(
            expected_p, abs=1e-6
        ), user


def test_pulse_fit_explains_a_history_it_cannot_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.cli import main

    once = tmp_path / "once.csv"  # headerless, comma-separated: nobody bought twice
    once.write_text("u1,2026-01-05,10\nu2,2026-01-09,12\n")
    args = ["fit", str(once), "--columns", "user_id,ts,amount", "--out", str(tmp_path / "m.json")]
    assert main(args) == 2
    assert "no customer made a repeat purchase" in capsys.readouterr().err
    assert main([*args[:2], "--out", str(tmp_path / "m.json")]) == 2
    assert "no column 'user_id'" in capsys.readouterr().err
    twice = tmp_path / "twice.csv"
    twice.write_text("u1,2026-01-05,10\nu1,2026-01-20,12\nu2,2026-01-09,12\n")
    assert main(["fit", str(twice), *args[2:], "--until", "not a date"]) == 2
    assert "RFC 3339" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_fit_learns_the_rfm_boundaries_numpy_finds_in_the_calibration(
    fitted: dict[str, Any],
) -> None:
    """The quintiles of recency (days since the last purchase on 1997-09-30), purchases and
    spend over the 365 days to the cut, computed here with pandas and numpy from the raw
    file: every row a purchase."""
    tx = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=list(COLUMNS), dtype=str)
    tx["date"] = pd.to_datetime(tx["ts"], format="%Y%m%d")
    tx["amount"] = tx["amount"].astype(float)
    end = pd.Timestamp(UNTIL)
    cal = tx[(tx["date"] <= end) & (tx["date"] > end - pd.Timedelta(days=365))]
    per_user = cal.groupby("user_id").agg(
        last=("date", "max"), frequency=("date", "size"), monetary=("amount", "sum")
    )
    recency = (end - per_user["last"]).dt.days
    q = (0.2, 0.4, 0.6, 0.8)
    want = {
        "recency_days": np.quantile(recency.to_numpy(), q),
        "frequency": np.quantile(per_user["frequency"].to_numpy(), q),
        "monetary": np.quantile(per_user["monetary"].to_numpy(), q),
    }
    for name, values in want.items():
        assert fitted["rfm"][name] == pytest.approx(values, abs=1e-6), name
    assert "RFM boundaries (quintiles, 365-day window)" in fitted["_stdout"]
    # A policy with the model takes them, unless its own [rfm] sets them.
    policy = load_policy(None, fitted["_path"])
    assert policy.rfm.frequency == tuple(fitted["rfm"]["frequency"])
