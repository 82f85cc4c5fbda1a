"""The nightly job one range of leads at a time: peak memory set by the range, not the CRM.

``leadml score --partition-leads N`` (``scoring.partition_leads``) reads the CRM with
:func:`leadml.data.partitions.open_lead_ranges` and scores it range by range:

1. Before any events are read: the models, the data's start and freshness, and the leads
   table's layout are checked on the whole CRM, as :func:`leadml.serve.scoring.score_to_file`
   checks them.
2. For each range of ``N`` leads: its events are read and validated, then features and
   probabilities are computed exactly as for the whole CRM (every feature of a lead reads only
   that lead's rows). Its rows (probabilities, score, display columns) and each row's model
   features are spilled, in call order, to a temporary directory beside the output. The
   events' layout counts, the skipped counts and the drift profile's bin counts are summed
   over ranges.
3. Once every range is done: the events' layout is checked on the sums (a refused layout
   writes nothing), then the ranges are merged on (score descending, lead_id) into the output,
   ``scoring.chunk_size`` rows (one Parquet row group) at a time. Each merged chunk is
   explained as the one-shot run explains the same chunk, while the previous one is written
   (the file's encoding hides behind the explaining, as it does one shot).

The output is byte for byte the file the one-shot run writes (tested at several range sizes,
with a lead's events spread over several files); memory holds one range's events and features,
plus a few numbers per lead of the whole CRM for the merge. The spill holds every scored lead's
model features (8 bytes each) and its output columns but the reasons, column by column (0.55 KB
per lead with 47 features), and is removed when the run ends, whether it succeeded or not.

Workers
    With ``scoring.workers`` above 1 (``--workers``), step 2 runs in that many worker processes
    at once (fresh interpreters; each gets its share of the cores for LightGBM and numba),
    one range each at a time; without ``partition_leads`` the leads are split evenly among
    them. Memory is then one range per worker. The explaining stays in this process (step 3).
    The file is the same. With workers, ``-v`` shows their time as one ``ranges`` stage.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
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
from leadml.data.features import _MAX_BLOCKS
from leadml.data.layout import EventCounts
from leadml.data.partitions import LeadRange, LeadRanges
from leadml.funnel import to_as_of
from leadml.model.stage import StageModel
from leadml.serve.contract import DISPLAY_COLUMNS, call_order, scores_attrs
from leadml.serve.scoring import (
    _check_fresh,
    _check_layout,
    _check_models,
    _explain_rows,
    _file_writer,
    _given,
    _prepare,
    _score_into,
    _with_reasons,
    check_start,
    run_info,
)

__all__ = ["Streamed", "stream_to_file"]

#: What the merge and the run summary keep of every scored lead.
_KEPT = ("lead_id", "stage", "score", "tier", "p_prospect", "p_opportunity")


#: One column's values as spilled: a numpy array, a category column's codes, or an extension
#: array (Arrow-backed text, zoned times).
_Values = Any


def _values(col: pd.Series) -> _Values:
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.array.codes
    return col.to_numpy() if isinstance(col.dtype, np.dtype) else col.array


def _join(parts: list[_Values]) -> _Values:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return type(parts[0])._concat_same_type(parts)


class _Spill:
    """One range's rows, chunk after chunk, pickled as their columns' arrays (the first record
    is the frame's columns and dtypes, without rows); read back in order, rows as taken."""

    def __init__(self, path: Path, *, write: bool = True):
        self.path = path
        self._out: BinaryIO | None = path.open("wb") if write else None
        self._in: BinaryIO | None = None
        self.empty: pd.DataFrame | None = None  # the columns and their dtypes
        self._buf: list[_Values] = []
        self._at = 0

    def write(self, chunk: pd.DataFrame) -> None:
        assert self._out is not None
        if self.empty is None:
            self.empty = chunk.iloc[:0]
            pickle.dump(self.empty, self._out, protocol=pickle.HIGHEST_PROTOCOL)
        values = [_values(chunk.iloc[:, j]) for j in range(chunk.shape[1])]
        pickle.dump(values, self._out, protocol=pickle.HIGHEST_PROTOCOL)

    def done(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def take(self, n: int) -> list[_Values]:
        """The next ``n`` rows, column by column."""
        if self._in is None:
            self._in = self.path.open("rb")
            self.empty = pickle.load(self._in)
        pieces: list[list[_Values]] = []
        while n > 0:
            if not self._buf or self._at == len(self._buf[0]):
                self._buf, self._at = pickle.load(self._in), 0
                continue
            k = min(n, len(self._buf[0]) - self._at)
            pieces.append([v[self._at : self._at + k] for v in self._buf])
            self._at += k
            n -= k
        return [_join(list(col)) for col in zip(*pieces, strict=True)]

    def close(self) -> None:
        self.done()
        if self._in is not None:
            self._in.close()
            self._in = None


def _gather(spills: list[_Spill], src: np.ndarray) -> pd.DataFrame:
    """The next rows of ``spills`` in merged order: row ``i`` is the next unread row of
    ``spills[src[i]]`` (each spill's rows are read in order)."""
    counts = np.bincount(src, minlength=len(spills))
    used = np.flatnonzero(counts)
    taken = [spills[b].take(int(counts[b])) for b in used]
    empty = spills[used[0]].empty
    assert empty is not None
    rows = [np.flatnonzero(src == b) for b in used] if len(used) > 1 else []
    rank = None
    columns: dict[Any, Any] = {}
    for j, (name, dtype) in enumerate(empty.dtypes.items()):
        parts = [t[j] for t in taken]
        if len(parts) == 1:
            values = parts[0]
        elif isinstance(parts[0], np.ndarray):  # each spill's rows to their places
            values = np.empty(len(src), dtype=parts[0].dtype)
            for at, part in zip(rows, parts, strict=True):
                values[at] = part
        else:
            if rank is None:  # a row's place in the parts joined: its part's first + its rank
                rank = np.empty(len(src), dtype=np.int64)
                first = 0
                for at in rows:
                    rank[at] = np.arange(first, first + len(at))
                    first += len(at)
            values = _join(parts).take(rank)
        if isinstance(dtype, pd.CategoricalDtype):
            values = pd.Categorical.from_codes(values, dtype=dtype, validate=False)
        columns[name] = values
    # Each column its own array, as in the frames spilled (a wide frame's are stacked).
    return pd.DataFrame(columns, copy=False if len(columns) <= _MAX_BLOCKS else None)


class Streamed:
    """A run scored one range of leads at a time, ready to be explained and written (module
    docs): the attributes a :class:`leadml.serve.scoring._Job` has, with the rows in spill
    files."""

    def __init__(
        self,
        as_of: pd.Timestamp,
        models: dict[str, StageModel],
        columns: pd.DataFrame,
        spills: list[_RangeSpill],
        heads: list[pd.DataFrame],
        next_t: list[np.ndarray],
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
        self._next_t = np.concatenate(next_t)[order] if next_t else np.array([], dtype=object)
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
        arrow: bool = False,
    ) -> Iterator[pd.DataFrame]:
        """The output in final order, ``scoring.chunk_size`` rows at a time: the ranges'
        spilled rows merged, then explained as :meth:`leadml.serve.scoring._Job.chunks`
        explains the same rows (the arguments are its)."""
        from tqdm.auto import tqdm

        size = config.scoring.chunk_size
        n = len(self.head)
        if n == 0:
            yield self._columns.copy()
            return
        show = sys.stderr.isatty() if progress is None else progress
        eng = engine or config.explain.engine
        with tqdm(total=n, disable=not show, desc="scoring", unit="lead", leave=False) as bar:
            for s in range(0, n, size):
                src = self._part[s : s + size]
                next_t = self._next_t[s : s + size]
                with timed("merge"):
                    head = _gather([sp.head for sp in self._spills], src)
                    head.index = pd.RangeIndex(s, s + len(head))
                    # Each model's rows, in this chunk's order: row i of ``frames[t]`` is the
                    # chunk's i-th row that ``t`` explains.
                    frames: dict[str, pd.DataFrame] = {}
                    pos = np.zeros(len(src), dtype=np.int64)
                    for t in self.models:
                        at = np.flatnonzero(next_t == t)
                        if len(at) and self._spills[0].features:
                            frames[t] = _gather([sp.features[t] for sp in self._spills], src[at])
                            pos[at] = np.arange(len(at))
                why = _explain_rows(frames, self.models, pos, next_t, config, eng)
                yield _with_reasons(head, why, arrow=arrow)
                bar.update(len(head))


class _RangeSpill:
    """One range's spill: its output rows but the reasons, and per model the features of
    the rows it explains; each in call order, ``scoring.chunk_size`` rows at a time."""

    def __init__(self, base: Path, models: Mapping[str, Any], *, explained: bool, write: bool):
        self.head = _Spill(base.with_name(base.name + "-head.pickle"), write=write)
        self.features = (
            {t: _Spill(base.with_name(f"{base.name}-{t}.pickle"), write=write) for t in models}
            if explained
            else {}
        )

    def write(self, job: Any, config: LeadMLConfig) -> None:
        size = config.scoring.chunk_size
        X = {t: m.features(job.frames[t]) for t, m in job.models.items()}
        try:
            for s in range(0, len(job.head), size):
                self.head.write(job.head.iloc[s : s + size])
                next_t, pos = job.next_t[s : s + size], job.pos[s : s + size]
                for t, out in self.features.items():
                    at = np.flatnonzero(next_t == t)
                    if len(at):
                        out.write(X[t].iloc[pos[at]])
        finally:
            self.done()

    def done(self) -> None:
        for sp in (self.head, *self.features.values()):
            sp.done()

    def close(self) -> None:
        for sp in (self.head, *self.features.values()):
            sp.close()


@dataclass
class _Scored:
    """What scoring one range leaves for the merge (its rows are in ``spill``)."""

    problems: list[Problem]
    counted: EventCounts
    skipped: dict[str, int]
    head: pd.DataFrame | None
    next_t: np.ndarray | None
    columns: pd.DataFrame | None
    features: dict[str, dict[str, Any]]
    spill: Path


def _explains(config: LeadMLConfig) -> bool:
    """Whether the run explains its scores (the spill then keeps the models' features)."""
    return bool(config.explain.n_positive or config.explain.n_negative)


def _score_range(
    r: LeadRange,
    ts: pd.Timestamp,
    models: dict[str, StageModel],
    config: LeadMLConfig,
    spill: Path,
    profile: bool,
) -> _Scored:
    """Read, validate and score one range; its rows and their model features, in call order,
    go to the spill files named after ``spill`` (pickled chunks)."""
    try:
        part = r.load()
    except DataContractError as e:
        return _Scored(e.problems, EventCounts(0, {}), {}, None, None, None, {}, spill)
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
    with timed("spill"):
        _RangeSpill(spill, models, explained=_explains(config), write=True).write(job, config)
    return _Scored(
        [],
        counted,
        dict(job.skipped),
        job.head[list(_KEPT)],
        job.next_t,
        job.columns(),
        features,
        spill,
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
    return _score_range(r, w["ts"], w["models"], w["config"], spill, w["profile"])


def _scored(
    ranges: list[LeadRange],
    ts: pd.Timestamp,
    models: dict[str, StageModel],
    config: LeadMLConfig,
    tmp: Path,
    profile: bool,
) -> Iterator[_Scored]:
    """Each range scored, in lead order: in this process, or in ``scoring.workers`` processes
    (fresh interpreters, each with its share of the cores) when more than one. After a range
    with problems, later ranges are only checked."""
    workers = min(config.scoring.workers, len(ranges))
    spills = [tmp / f"range-{r.index:05d}" for r in ranges]
    if workers <= 1:
        failed = False
        for r, spill in zip(ranges, spills, strict=True):
            if failed:  # check the rest, score nothing more
                try:
                    r.load()
                except DataContractError as e:
                    yield _Scored(e.problems, EventCounts(0, {}), {}, None, None, None, {}, spill)
                continue
            done = _score_range(r, ts, models, config, spill, profile)
            failed = bool(done.problems)
            yield done
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    blob = pickle.dumps({"ts": ts, "models": models, "config": config, "profile": profile})
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
    spill_dir: str | Path | None = None,
    profile: bool = False,
) -> Iterator[Streamed]:
    """Score ``ranges`` range by range into a spill directory (in ``spill_dir``, default the
    system's temporary directory) and give the run, ready to explain and write
    (:meth:`Streamed.chunks`); the spill is removed when the block ends. ``profile``: also
    sum the drift profile a score history keeps. Once the leads' layout is checked,
    ``ranges`` keeps only the leads columns scoring reads."""
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
    spills: list[_RangeSpill] = []
    try:
        heads: list[pd.DataFrame] = []
        next_t: list[np.ndarray] = []
        skipped: dict[str, int] = {}
        counted = EventCounts(0, {})
        problems: list[Problem] = []
        features: dict[str, dict[str, Any]] = {}
        columns = None
        for done in _scored(ranges.ranges(), ts, ms, config, tmp, profile):
            problems += done.problems
            if problems:
                continue
            counted = counted + done.counted
            for k, v in done.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
            _sum_features(features, done.features)
            columns = done.columns if columns is None else columns
            assert done.head is not None and done.next_t is not None
            heads.append(done.head)
            next_t.append(done.next_t)
            spills.append(_RangeSpill(done.spill, ms, explained=_explains(config), write=False))
        if problems:
            raise DataContractError(problems)
        with timed("layout"):
            _check_layout(whole, ts, ms, config, events=counted, tables=("events",))
        assert columns is not None
        with timed("merge"):
            run = Streamed(ts, ms, columns, spills, heads, next_t, skipped, features, config)
        del heads, next_t
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
        spill_dir=path.parent,
        profile=history is not None,
    ) as run:
        return _score_into(_file_writer(path, fmt), run, config, engine, progress, history)
