"""The nightly job one range of leads at a time: peak memory set by the range, not the CRM.

``leadml score --partition-leads N`` (``scoring.partition_leads``) reads the CRM with
:func:`leadml.data.partitions.open_lead_ranges` and scores it range by range:

1. Before any events are read: the models, the data's start and freshness, and the leads
   table's layout are checked on the whole CRM, as :func:`leadml.serve.scoring.score_to_file`
   checks them.
2. For each range of ``N`` leads: its events are read and validated, then features,
   probabilities and reasons are computed exactly as for the whole CRM (every feature of a lead
   reads only that lead's rows), and its explained rows are spilled, in call order, to a
   temporary directory beside the output. The events' layout counts, the skipped counts and the
   drift profile's bin counts are summed over ranges.
3. Once every range is done: the events' layout is checked on the sums (a refused layout
   writes nothing), then the ranges are merged on (score descending, lead_id) into the output,
   ``scoring.chunk_size`` rows (one Parquet row group) at a time.

The output is byte for byte the file the one-shot run writes (tested at several range sizes,
with a lead's events spread over several files); memory holds one range's events and features,
plus a few numbers per lead of the whole CRM for the merge. The spill is about the size of the
uncompressed output and is removed when the run ends, whether it succeeded or not.

Workers
    With ``scoring.workers`` above 1 (``--workers``), step 2 runs in that many worker processes
    at once (fresh interpreters; each gets its share of the cores for LightGBM and TreeSHAP),
    one range each at a time; without ``partition_leads`` the leads are split evenly among
    them. Memory is then one range per worker. The file is the same. With workers, ``-v``
    shows their time as one ``ranges`` stage.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from leadml._timing import stage as timed
from leadml.config import LeadMLConfig
from leadml.data.contracts import DataContractError, Problem
from leadml.data.layout import EventCounts
from leadml.data.partitions import LeadRange, LeadRanges
from leadml.funnel import to_as_of
from leadml.model.stage import StageModel
from leadml.serve.contract import DISPLAY_COLUMNS, call_order, scores_attrs
from leadml.serve.scoring import (
    _check_fresh,
    _check_layout,
    _check_models,
    _file_writer,
    _given,
    _prepare,
    _score_into,
    check_start,
    run_info,
)

__all__ = ["Streamed", "stream_to_file"]

#: What the merge and the run summary keep of every scored lead.
_KEPT = ("lead_id", "stage", "score", "tier", "p_prospect", "p_opportunity")


class _Spill:
    """One range's explained rows, pickled chunk after chunk; read back in order."""

    def __init__(self, path: Path, *, write: bool = True):
        self.path = path
        self._out: BinaryIO | None = path.open("wb") if write else None
        self._in: BinaryIO | None = None
        self._buf: pd.DataFrame | None = None
        self._at = 0

    def write(self, chunk: pd.DataFrame) -> None:
        assert self._out is not None
        pickle.dump(chunk, self._out, protocol=pickle.HIGHEST_PROTOCOL)

    def done(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def take(self, n: int) -> pd.DataFrame:
        """The next ``n`` rows."""
        if self._in is None:
            self._in = self.path.open("rb")
        pieces = []
        while n > 0:
            if self._buf is None or self._at == len(self._buf):
                self._buf, self._at = pickle.load(self._in), 0
                continue
            k = min(n, len(self._buf) - self._at)
            pieces.append(self._buf.iloc[self._at : self._at + k])
            self._at += k
            n -= k
        return pieces[0] if len(pieces) == 1 else pd.concat(pieces)

    def close(self) -> None:
        self.done()
        if self._in is not None:
            self._in.close()
            self._in = None


class Streamed:
    """A run scored one range of leads at a time, ready to be written (module docs): the
    attributes a :class:`leadml.serve.scoring._Job` has, with the rows in spill files."""

    def __init__(
        self,
        as_of: pd.Timestamp,
        models: dict[str, StageModel],
        columns: pd.DataFrame,
        spills: list[_Spill],
        heads: list[pd.DataFrame],
        skipped: dict[str, int],
        features: dict[str, dict[str, Any]],
        config: LeadMLConfig,
    ):
        self.as_of = as_of
        self.models = models
        self.skipped = skipped
        self._columns = columns
        self._spills = spills
        whole = pd.concat(heads, ignore_index=True) if heads else columns[list(_KEPT)]
        order = call_order(whole)
        self.head = whole.iloc[order].reset_index(drop=True)
        part = np.repeat(np.arange(len(heads), dtype=np.int32), [len(h) for h in heads])
        self._part = part[order]
        self._features = features
        self.attrs = scores_attrs(
            models, as_of, skipped=skipped, row_group_size=config.scoring.chunk_size
        )

    def columns(self) -> pd.DataFrame:
        return self._columns

    def profiles(self) -> dict[str, dict[str, Any]]:
        """The drift profile of each model with a reference: the feature bins summed over the
        ranges, the score's from every row's probability in file order (as the one-shot run).
        Only for a run prepared with ``profile=True``."""
        from leadml.model.drift import profile

        wanted = [t for t, m in self.models.items() if m.metadata.get("reference") is not None]
        if set(wanted) != set(self._features):
            raise RuntimeError("this run was prepared without profile=True")
        out: dict[str, dict[str, Any]] = {}
        for t, found in self._features.items():
            p = self.head[f"p_{t}"].to_numpy(dtype=float)
            p = p[np.isfinite(p)]
            ref = self.models[t].metadata["reference"]
            prof = profile(ref, pd.DataFrame(index=range(len(p))), p)
            prof["features"] = found
            out[t] = prof
        return out

    def run_info(self) -> dict[str, Any]:
        return run_info(self)

    def chunks(
        self,
        config: LeadMLConfig,
        engine: str | None = None,
        progress: bool | None = None,
        *,
        arrow: bool = True,
    ) -> Iterator[pd.DataFrame]:
        """The output in final order, ``scoring.chunk_size`` rows at a time: the ranges'
        spilled rows merged (already explained; the arguments are the one-shot job's)."""
        size = config.scoring.chunk_size
        n = len(self.head)
        if n == 0:
            yield self._columns.copy()
            return
        for s in range(0, n, size):
            src = self._part[s : s + size]
            counts = np.bincount(src, minlength=len(self._spills))
            used = np.flatnonzero(counts)
            with timed("merge"):
                pieces = [self._spills[b].take(int(counts[b])) for b in used]
                cat = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
                start = np.zeros(len(self._spills), dtype=np.int64)
                start[used] = np.cumsum(counts[used]) - counts[used]
                # A row's place in ``cat``: its range's first row there + its rank in its range.
                rank = np.empty(len(src), dtype=np.int64)
                for b in used:
                    at = np.flatnonzero(src == b)
                    rank[at] = start[b] + np.arange(len(at))
                chunk = cat.take(rank)
                chunk.index = pd.RangeIndex(s, s + len(chunk))
            yield chunk


@dataclass
class _Scored:
    """What scoring one range leaves for the merge (its rows are in ``spill``)."""

    problems: list[Problem]
    counted: EventCounts
    skipped: dict[str, int]
    head: pd.DataFrame | None
    columns: pd.DataFrame | None
    features: dict[str, dict[str, Any]]
    spill: Path


def _score_range(
    r: LeadRange,
    ts: pd.Timestamp,
    models: dict[str, StageModel],
    config: LeadMLConfig,
    engine: str | None,
    progress: bool | None,
    spill: Path,
    profile: bool,
) -> _Scored:
    """Read, validate, score and explain one range; its explained rows, in call order, go to
    ``spill`` (pickled chunks)."""
    try:
        part = r.load()
    except DataContractError as e:
        return _Scored(e.problems, EventCounts(0, {}), {}, None, None, {}, spill)
    with timed("layout"):
        counted = EventCounts.of(part, ts)
    job = _prepare(part, ts, models, config, checked=True)
    del part
    features: dict[str, dict[str, Any]] = {
        t: {} for t, m in models.items() if profile and m.metadata.get("reference") is not None
    }
    if features:
        with timed("profile"):  # the drift profile's feature bins, summed over ranges
            _add_features(features, job)
    out = _Spill(spill)
    for chunk in job.chunks(config, engine or config.explain.engine, progress, arrow=True):
        with timed("spill"):
            out.write(chunk)
    out.done()
    return _Scored(
        [], counted, dict(job.skipped), job.head[list(_KEPT)], job.columns(), features, spill
    )


#: A worker process's run: set once by :func:`_worker_start`.
_WORKER: dict[str, Any] = {}


def _worker_start(threads: int, blob: bytes) -> None:
    """In a fresh worker process: limit LightGBM's and numba's threads (before either library
    loads), then unpickle the run's models and settings."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    _WORKER.update(pickle.loads(blob))


def _worker_range(r: LeadRange, spill: Path) -> _Scored:
    w = _WORKER
    return _score_range(
        r, w["ts"], w["models"], w["config"], w["engine"], False, spill, w["profile"]
    )


def _scored(
    ranges: list[LeadRange],
    ts: pd.Timestamp,
    models: dict[str, StageModel],
    config: LeadMLConfig,
    engine: str | None,
    progress: bool | None,
    tmp: Path,
    profile: bool,
) -> Iterator[_Scored]:
    """Each range scored, in lead order: in this process, or in ``scoring.workers`` processes
    (fresh interpreters, each with its share of the cores) when more than one. After a range
    with problems, later ranges are only checked."""
    workers = min(config.scoring.workers, len(ranges))
    spills = [tmp / f"range-{r.index:05d}.pickle" for r in ranges]
    if workers <= 1:
        failed = False
        for r, spill in zip(ranges, spills, strict=True):
            if failed:  # check the rest, score nothing more
                try:
                    r.load()
                except DataContractError as e:
                    yield _Scored(e.problems, EventCounts(0, {}), {}, None, None, {}, spill)
                continue
            done = _score_range(r, ts, models, config, engine, progress, spill, profile)
            failed = bool(done.problems)
            yield done
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    cfg = config.with_overrides({"explain": {"n_threads": threads}})
    blob = pickle.dumps(
        {"ts": ts, "models": models, "config": cfg, "engine": engine, "profile": profile}
    )
    with (
        timed("ranges"),
        ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start,
            initargs=(threads, blob),
        ) as pool,
    ):
        yield from pool.map(_worker_range, ranges, spills)


@contextmanager
def prepare_ranges(
    ranges: LeadRanges,
    as_of: pd.Timestamp | str | None,
    models: Mapping[str, StageModel] | None,
    config: LeadMLConfig,
    *,
    engine: str | None = None,
    progress: bool | None = None,
    spill_dir: str | Path | None = None,
    profile: bool = False,
) -> Iterator[Streamed]:
    """Score ``ranges`` range by range into a spill directory (in ``spill_dir``, default the
    system's temporary directory) and give the run, ready to write; the spill is removed when
    the block ends. ``profile``: also sum the drift profile a score history keeps. Once the
    leads' layout is checked, ``ranges`` keeps only the leads columns scoring reads."""
    ts = to_as_of(as_of)
    ms = _check_models(_given(models))
    whole = ranges.whole
    check_start(whole, ts)
    with timed("layout"):
        _check_fresh(whole, ts, config)
        _check_layout(whole, ts, ms, config, tables=("leads",))
    c = ranges.columns
    fit = [col for m in ms.values() for col in m.spec.fit_columns]
    ranges.keep_only([c.lead_id, c.created_at, *fit, *DISPLAY_COLUMNS])
    whole = ranges.whole
    tmp = Path(tempfile.mkdtemp(prefix=".leadml-spill-", dir=spill_dir))
    spills: list[_Spill] = []
    try:
        heads: list[pd.DataFrame] = []
        skipped: dict[str, int] = {}
        counted = EventCounts(0, {})
        problems: list[Problem] = []
        features: dict[str, dict[str, Any]] = {}
        columns = None
        for done in _scored(ranges.ranges(), ts, ms, config, engine, progress, tmp, profile):
            problems += done.problems
            if problems:
                continue
            counted = counted + done.counted
            for k, v in done.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
            _sum_features(features, done.features)
            columns = done.columns if columns is None else columns
            assert done.head is not None
            heads.append(done.head)
            spills.append(_Spill(done.spill, write=False))
        if problems:
            raise DataContractError(problems)
        with timed("layout"):
            _check_layout(whole, ts, ms, config, events=counted, tables=("events",))
        assert columns is not None
        with timed("merge"):
            run = Streamed(ts, ms, columns, spills, heads, skipped, features, config)
        del heads
        yield run
    finally:
        for sp in spills:
            sp.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _sum_features(total: dict[str, dict[str, Any]], found: dict[str, dict[str, Any]]) -> None:
    """Add one range's drift-profile bin counts (per model, per feature) to ``total``."""
    for t, per_feature in found.items():
        into = total.setdefault(t, {})
        for name, counts in per_feature.items():
            have = into.get(name)
            into[name] = (
                counts if have is None else [a + b for a, b in zip(have, counts, strict=True)]
            )


def _add_features(found: dict[str, dict[str, Any]], job: Any) -> None:
    """A range's drift-profile feature bin counts, per model of ``found``."""
    profiles = job.profiles()
    for t in found:
        found[t] = dict(profiles[t]["features"])


def stream_to_file(
    ranges: LeadRanges,
    as_of: pd.Timestamp,
    models: Mapping[str, StageModel],
    path: Path,
    fmt: str,
    config: LeadMLConfig,
    *,
    engine: str | None = None,
    progress: bool | None = None,
    history: str | Path | None = None,
) -> Streamed:
    """:func:`leadml.serve.scoring.score_to_file` for a CRM read one range of leads at a time
    (module docs): the same file, byte for byte. The spill goes beside ``path``."""
    with prepare_ranges(
        ranges,
        as_of,
        models,
        config,
        engine=engine,
        progress=progress,
        spill_dir=path.parent,
        profile=history is not None,
    ) as run:
        return _score_into(_file_writer(path, fmt), run, config, engine, progress, history)
