"""Scoring one range of leads at a time (``--partition-leads``): the same bytes as the one-shot
run, each range holding only its own leads' rows, and every problem reported before any output
is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadml.config import LeadMLConfig
from leadml.data.contracts import DataContractError, load_crm
from leadml.data.layout import LayoutWarning
from leadml.data.partitions import open_lead_ranges
from leadml.jobs import run_score
from leadml.model.bundle import save_bundle
from leadml.serve.contract import ScoringError

AS_OF = "2025-04-01"


@pytest.fixture(scope="module")
def bundles(trained, tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("bundles")
    for t, r in trained.items():
        save_bundle(r.model, root / f"bundle-{t}")
    return [str(root / "bundle-prospect"), f"opportunity={root / 'bundle-opportunity'}"]


def _write(crm, root: Path, events: pd.DataFrame, cuts: list[int]) -> Path:
    """The CRM with its events as a directory of Parquet files cut at row ``cuts``."""
    from leadml.datasets import write_crm

    write_crm(crm, root)
    (root / "events.parquet").unlink()
    (root / "events").mkdir()
    bounds = [0, *cuts, len(events)]
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        events.iloc[a:b].to_parquet(root / "events" / f"part-{i}.parquet", row_group_size=4000)
    return root


@pytest.fixture(scope="module")
def lead_ordered(crm_medium, tmp_path_factory) -> Path:
    """Events in lead order in three files; the cuts fall inside a lead's events."""
    ev = crm_medium.events
    cuts = [len(ev) // 3 + 17, 2 * len(ev) // 3 + 5]
    for cut in cuts:  # the cut really splits a lead's events between two files
        assert ev["lead_id"].iloc[cut - 1] == ev["lead_id"].iloc[cut]
    return _write(crm_medium, tmp_path_factory.mktemp("ordered") / "crm", ev, cuts)


@pytest.fixture(scope="module")
def time_ordered(crm_medium, tmp_path_factory) -> Path:
    """Events in time order (every file holds every range's leads), ties kept in table order."""
    ev = crm_medium.events.sort_values("occurred_at", kind="stable").reset_index(drop=True)
    cuts = [len(ev) // 2]
    return _write(crm_medium, tmp_path_factory.mktemp("by_time") / "crm", ev, cuts)


def _config(**scoring) -> LeadMLConfig:
    return LeadMLConfig().with_overrides({"scoring": {"chunk_size": 700, **scoring}})


def _run(data: Path, out: Path, bundles: list[str], size: int | None, **kw) -> str:
    return run_score(
        data,
        out,
        as_of=AS_OF,
        model_specs=bundles,
        config=_config(partition_leads=size),
        overwrite=True,
        **kw,
    )


def test_each_range_holds_exactly_its_leads_rows(crm_medium, time_ordered) -> None:
    """Concatenated, the ranges are the whole validated CRM, row for row, even when every
    events file holds every range's leads."""
    whole = load_crm(time_ordered)
    ranges = open_lead_ranges(time_ordered, 1200)
    parts = list(ranges.parts())
    assert len(parts) == len(ranges) == 5
    for part in parts:
        assert len(part.leads) <= 1200
        assert set(part.events["lead_id"]) <= set(part.leads["lead_id"])
    for name in ("leads", "events", "stage_changes"):
        got = pd.concat([getattr(p, name) for p in parts], ignore_index=True)
        want = getattr(whole, name)
        if name == "events":  # each range's categories are its own event types
            got["event_type"] = got["event_type"].astype(str)
            want = want.assign(event_type=want["event_type"].astype(str))
        pd.testing.assert_frame_equal(got, want)


def test_streamed_output_equals_the_one_shot_output_byte_for_byte(
    lead_ordered, bundles, tmp_path
) -> None:
    one = tmp_path / "one.parquet"
    summary = _run(lead_ordered, one, bundles, None)
    for size in (1777, 10**6):
        out = tmp_path / f"s{size}.parquet"
        streamed = _run(lead_ordered, out, bundles, size)
        assert out.read_bytes() == one.read_bytes(), size
        assert streamed.splitlines()[1:] == summary.splitlines()[1:]  # skipped, models
    assert not list(tmp_path.glob(".leadml-spill-*"))  # the spill is gone


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_every_range_size_gives_the_same_bytes_and_history(
    lead_ordered, time_ordered, bundles, tmp_path, fmt
) -> None:
    """Range sizes that cut the 5,000 leads unevenly (and chunks of 700 rows that take rows
    from several ranges), events in lead order or in time order: the same file, and the same
    score history (scores and run summary, drift profile included)."""
    one = tmp_path / f"one.{fmt}"
    _run(lead_ordered, one, bundles, None, history=tmp_path / "h-one")
    for data in (lead_ordered, time_ordered):
        for size in (333, 2500):
            out = tmp_path / f"s.{fmt}"
            hist = tmp_path / f"h-{data.parent.name}-{size}"
            _run(data, out, bundles, size, history=hist)
            assert out.read_bytes() == one.read_bytes(), (data, size)
            [a], [b] = (list((h).iterdir()) for h in (tmp_path / "h-one", hist))
            assert (a / "scores.parquet").read_bytes() == (b / "scores.parquet").read_bytes()
            info_a, info_b = (json.loads((x / "run.json").read_text()) for x in (a, b))
            info_a.pop("written_at"), info_b.pop("written_at")
            assert info_a == info_b


def test_event_problems_of_every_range_are_reported_together_and_nothing_is_written(
    crm_medium, bundles, tmp_path
) -> None:
    ev = crm_medium.events.copy()
    ev["lead_id"] = ev["lead_id"].astype("int64")
    ev.loc[5, "lead_id"] = 999_999  # an unknown lead: after every range's last id
    ev.loc[len(ev) - 3, "occurred_at"] = pd.Timestamp("1960-01-01")  # before 1970, last range
    data = _write(crm_medium, tmp_path / "crm", ev, [len(ev) // 2])
    out = tmp_path / "s.parquet"
    with pytest.raises(DataContractError) as e:
        _run(data, out, bundles, 1000)
    text = str(e.value)
    assert "2 problems" in text, text
    assert "unknown lead" in text and "999999" in text and "leads 4001 to 5000" in text
    assert "before 1970" in text
    assert not out.exists() and not list(tmp_path.glob(".leadml-spill-*"))


def test_a_renamed_event_vocabulary_is_refused_before_anything_is_written(
    crm_medium, bundles, tmp_path
) -> None:
    ev = crm_medium.events.copy()
    ev["event_type"] = "x_" + ev["event_type"].astype(str)
    data = _write(crm_medium, tmp_path / "crm", ev, [])
    out = tmp_path / "s.parquet"
    with (
        pytest.raises(ScoringError, match="holds none of the event types"),
        pytest.warns(LayoutWarning, match="100% of the events have a type"),
    ):
        _run(data, out, bundles, 2000)
    assert not out.exists() and not list(tmp_path.glob(".leadml-spill-*"))


def test_inputs_it_cannot_stream_are_clear_errors(crm_medium, lead_ordered, tmp_path) -> None:
    from leadml.datasets import write_crm

    csv = write_crm(crm_medium, tmp_path / "csv", format="csv")
    with pytest.raises(DataContractError, match="needs the events as Parquet"):
        open_lead_ranges(csv, 100)
    texts = tmp_path / "texts"
    shutil.copytree(lead_ordered, texts)
    for f in (texts / "events").iterdir():
        ev = pd.read_parquet(f)
        ev.assign(lead_id=ev["lead_id"].astype(str)).to_parquet(f)
    with pytest.raises(DataContractError, match="compares them as stored"):
        open_lead_ranges(texts, 100)


def test_text_ids_stream_too(crm_medium, bundles, tmp_path) -> None:
    """Zero-padded text ids, in both tables: ranges of text, the same bytes."""
    from leadml.data.contracts import CRMData

    pad = lambda s: s.map(lambda i: f"{i:08d}")  # noqa: E731
    crm = CRMData(
        crm_medium.leads.assign(lead_id=pad(crm_medium.leads["lead_id"])),
        crm_medium.events.assign(lead_id=pad(crm_medium.events["lead_id"])),
        crm_medium.stage_changes.assign(lead_id=pad(crm_medium.stage_changes["lead_id"])),
    )
    data = _write(crm, tmp_path / "crm", crm.events, [len(crm.events) // 2])
    one, streamed = tmp_path / "one.parquet", tmp_path / "s.parquet"
    _run(data, one, bundles, None)
    _run(data, streamed, bundles, 1500)
    assert streamed.read_bytes() == one.read_bytes()
    assert pd.read_parquet(streamed)["lead_id"].str.len().eq(8).all()
    assert np.array_equal(
        pd.read_parquet(streamed)["score"].to_numpy(), pd.read_parquet(one)["score"].to_numpy()
    )


def test_the_file_does_not_depend_on_how_its_columns_are_chunked_in_memory(tmp_path) -> None:
    """A chunk merged from several ranges holds Arrow columns in several pieces; Parquet cuts
    pages and falls back from dictionary encoding where its input's pieces end, so the writer
    must see one piece per column. 40,000 distinct 60-character names overflow the 1 MB
    dictionary page: the case a million-lead run met."""
    import pyarrow as pa

    from leadml.serve.contract import ScoresWriter

    n = 40_000
    names = [f"{i:08d}-" + "x" * 51 for i in range(n)]
    whole = pd.DataFrame({"lead_id": np.arange(n), "company": pd.array(names, dtype="str")})
    pieces = pa.chunked_array([pa.array(names[: n // 3]), pa.array(names[n // 3 :])])
    chunked = whole.assign(company=pd.arrays.ArrowExtensionArray(pieces))
    written = []
    for i, frame in enumerate((whole, chunked)):
        path = tmp_path / f"s{i}.parquet"
        with ScoresWriter(
            path, "parquet", n_reasons=0, metadata={}, columns=whole, row_group_size=n
        ) as w:
            w.write(frame)
            w.commit()
        written.append(path.read_bytes())
    assert written[0] == written[1]


@pytest.mark.slow
def test_worker_processes_give_the_same_bytes_history_and_problems(
    lead_ordered, crm_medium, bundles, tmp_path
) -> None:
    """``--workers 2`` (ranges scored in two fresh processes) writes the one-shot file and
    history; a range's problems still come back, with nothing written."""
    one = tmp_path / "one.parquet"
    _run(lead_ordered, one, bundles, None, history=tmp_path / "h-one")
    out = tmp_path / "w.parquet"
    run_score(
        lead_ordered,
        out,
        as_of=AS_OF,
        model_specs=bundles,
        config=_config(partition_leads=1200, workers=2),
        history=tmp_path / "h-w",
    )
    assert out.read_bytes() == one.read_bytes()
    [a], [b] = (list((tmp_path / h).iterdir()) for h in ("h-one", "h-w"))
    info_a, info_b = (json.loads((x / "run.json").read_text()) for x in (a, b))
    info_a.pop("written_at"), info_b.pop("written_at")
    assert info_a == info_b

    ev = crm_medium.events.copy()
    ev.loc[len(ev) - 3, "occurred_at"] = pd.Timestamp("1960-01-01")
    bad = _write(crm_medium, tmp_path / "bad", ev, [len(ev) // 2])
    with pytest.raises(DataContractError, match="before 1970"):
        run_score(
            bad,
            tmp_path / "never.parquet",
            as_of=AS_OF,
            model_specs=bundles,
            config=_config(workers=2),
        )
    assert not (tmp_path / "never.parquet").exists()


@pytest.mark.slow
def test_cli_workers_as_a_user_runs_them(lead_ordered, bundles, tmp_path) -> None:
    """``python -m leadml score --workers 2``: worker processes import the package again, never
    the command line."""
    import subprocess
    import sys

    models = sum((["--model", m] for m in bundles), [])
    run = subprocess.run(
        [sys.executable, "-m", "leadml", "score", "--data", str(lead_ordered), "--as-of", AS_OF,
         "--out", "s.parquet", "--workers", "2", *models],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("scored ") == 1 and "Traceback" not in run.stderr
    one = tmp_path / "one.parquet"
    _run(lead_ordered, one, bundles, None)
    chunked = pd.read_parquet(tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(chunked, pd.read_parquet(one))


@pytest.mark.slow
def test_event_values_are_read_when_a_model_sums_them_and_only_then(
    crm_medium, lead_ordered, bundles, fast_config, tmp_path
) -> None:
    """The job reads the events' ``value`` column only when a model sums values (50M values are
    400 MB): such a model scores, one shot and range by range, exactly as in process on the
    whole CRM; models without value features never read the column, whatever it holds."""
    from leadml.model.training import train
    from leadml.serve.scoring import score

    cfg = fast_config.with_overrides({"features": {"value_window_days": 30}})
    model = train(crm_medium, "prospect", cfg).model
    assert model.spec.value_types and model.spec.value_window_days == 30
    values = [str(save_bundle(model, tmp_path / "bundle-values"))]
    want = score(load_crm(lead_ordered), AS_OF, {"prospect": model}, config=_config())
    for size in (None, 1777):
        out = tmp_path / f"v-{size}.parquet"
        _run(lead_ordered, out, values, size)
        got = pd.read_parquet(out)
        assert list(got["lead_id"]) == list(want["lead_id"]), size
        np.testing.assert_array_equal(got["p_prospect"], want["p_prospect"])
    # The same events with a value column of text: read, it is refused; not read, unseen.
    junk = tmp_path / "junk"
    shutil.copytree(lead_ordered, junk)
    for part in sorted((junk / "events").iterdir()):
        ev = pd.read_parquet(part)
        ev.assign(value="n/a").to_parquet(part, row_group_size=4000)
    _run(junk, tmp_path / "junk-ok.parquet", bundles, 1777)
    _run(junk, tmp_path / "junk-ok-one.parquet", bundles, None)
    for size in (None, 1777):
        with pytest.raises(DataContractError, match=r"events\.value|value.*not numeric"):
            _run(junk, tmp_path / "junk-values.parquet", values, size)


def test_events_that_change_under_a_running_job_are_a_clear_error(
    lead_ordered, bundles, tmp_path
) -> None:
    """Files rewritten after the job opened them (here: data pages zeroed, footer intact, so
    the ranges still open and count) are named range by range as a data problem: no
    traceback, nothing written."""
    data = tmp_path / "crm"
    shutil.copytree(lead_ordered, data)
    part = data / "events" / "part-1.parquet"
    raw = bytearray(part.read_bytes())
    footer = int.from_bytes(raw[-8:-4], "little")
    raw[100 : len(raw) - footer - 108] = bytes(len(raw) - footer - 208)
    part.write_bytes(bytes(raw))
    out = tmp_path / "scores.parquet"
    with pytest.raises(DataContractError, match=r"could not read events for leads \d+ to \d+"):
        _run(data, out, bundles, 1500)
    assert not out.exists()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spilled_rows_come_back_in_merged_order_with_their_dtypes(tmp_path, seed) -> None:
    """What the merge reads back from several ranges' spills is, row for row and dtype for
    dtype, the rows it asked for: numbers (NaN, -0.0), times (with and without a zone),
    categories (missing ones too), Arrow-backed and Python text; taken across the spills'
    chunk boundaries, in any interleaving."""
    from leadml.serve.stream import _gather, _Spill

    rng = np.random.default_rng(seed)
    sizes = [int(x) for x in rng.integers(0, 40, size=3)]
    sizes[0] += 1  # at least one row
    sizes.append(0)  # a range without a scored lead: its spill has no rows, not even a header

    def frame(n: int, first: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "lead_id": np.arange(first, first + n, dtype=np.int64),
                "x": rng.choice([0.5, -0.0, np.nan, 1e-300, np.inf], size=n),
                "at": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 99, n), "h"),
                "zoned": pd.date_range("2025-01-01", periods=n, freq="h", tz="Europe/Paris"),
                "level": pd.Categorical(
                    rng.choice(["a", "b", None], size=n), categories=["b", "a", "z"]
                ),
                "name": pd.array(rng.choice(["Ann", "Bo", None], size=n), dtype="str"),
                "raw": pd.Series(rng.choice(["p", 3, None], size=n), dtype=object),
                "flag": rng.random(n) < 0.5,
            }
        )

    parts = [frame(n, 1000 * b) for b, n in enumerate(sizes)]
    spills = []
    for b, part in enumerate(parts):
        sp = _Spill(tmp_path / f"s{b}")
        step = int(rng.integers(1, 9))
        for s in range(0, len(part), step):
            sp.write(part.iloc[s : s + step])
        sp.done()
        spills.append(_Spill(tmp_path / f"s{b}", write=False))
    src = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    got, at = [], 0
    while at < len(src):
        k = int(rng.integers(1, 12))
        got.append(_gather(spills, src[at : at + k]))
        at += k
    rank = np.zeros(len(src), dtype=np.int64)
    for b in range(len(sizes)):
        rank[src == b] = np.arange(sizes[b])
    want = pd.concat([parts[b].iloc[[r]] for b, r in zip(src, rank, strict=True)])
    merged = pd.concat(got, ignore_index=True)
    pd.testing.assert_frame_equal(merged, want.reset_index(drop=True), check_exact=True)
    assert np.array_equal(np.signbit(merged["x"]), np.signbit(want["x"]))  # -0.0 stays
    for sp in spills:
        sp.close()
