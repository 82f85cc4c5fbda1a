"""Score history: every scoring run kept, one partition per ``as_of``, and each lead's trend.

Layout (``leadml score --history DIR``, or ``monitor.history_dir`` in the config)::

    DIR/
      as_of=20250623T000000/
        scores.parquet   the run's scores file (the same contract as --out, Parquet)
        run.json         when, which models (version, horizon, backtest metrics), how many
                         leads, and the run's drift profile against each model's training
                         reference (bin counts only, see leadml.model.drift)
      as_of=20250630T000000/
        ...

A run is written into a hidden temporary directory in ``DIR`` and renamed into place only once
both files are complete, so readers never see half a run. Re-running an ``as_of`` replaces that
partition only: the new run is complete before the old one is moved aside (renamed to a hidden
name, then deleted); a crash between those two renames leaves no partition for that ``as_of``
and a hidden directory the next run removes, never a mix of two runs. Hidden entries (``.*``) are
never read.

Trend (the rep's "is this lead warming up?"): with a history, each scored lead is compared with
its row in the newest earlier run: ``previous_score``, ``score_change`` (points), ``trend`` and
``changes``. ``trend`` is ``Improving`` or ``Declining`` when the score moved by at least
``monitor.trend_points`` (5) points for the same question (same stage), else ``Steady``;
``New`` for a lead the previous run did not score and ``Advanced`` for one that moved to the
next stage since (its score now answers another question, so no change is computed).
``changes`` names the reasons whose points moved most (at least 1 point, at most two), e.g.
``Viewed the pricing page 4 times in the last 7 days: +6.2 pts since 2025-06-23``; a reason
that is no longer listed counts as 0 points now.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadml.funnel import FUNNEL
from leadml.serve.contract import ScoresWriter, ScoringError, jsonable, read_scores

__all__ = [
    "HistoryRun",
    "HistoryWriter",
    "Previous",
    "TREND_COLUMNS",
    "add_trend",
    "list_runs",
    "partition_name",
    "previous_run",
]

#: Columns a history-aware run appends to the scores file, in this order.
TREND_COLUMNS: tuple[str, ...] = ("previous_score", "score_change", "trend", "changes")
_PREFIX = "as_of="
_SCORES = "scores.parquet"
_INFO = "run.json"


def partition_name(as_of: pd.Timestamp) -> str:
    """``as_of=20250630T000000``: sortable, and a valid file name everywhere."""
    return f"{_PREFIX}{pd.Timestamp(as_of).strftime('%Y%m%dT%H%M%S')}"


@dataclass(frozen=True)
class HistoryRun:
    """One run in the history: its ``as_of``, its folder and its ``run.json``."""

    as_of: pd.Timestamp
    path: Path
    info: dict[str, Any]

    def scores(self) -> pd.DataFrame:
        return read_scores(self.path / _SCORES)


def _check_dir(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(
            f"--history {str(root)!r} is a file; pass a directory (created if missing)"
        )


def list_runs(history: str | Path) -> list[HistoryRun]:
    """Every complete run in ``history``, oldest first (empty if the directory is missing)."""
    root = Path(history)
    _check_dir(root)
    if not root.exists():
        return []
    runs = []
    for d in sorted(root.iterdir()):
        if not d.name.startswith(_PREFIX) or not (d / _SCORES).is_file():
            continue
        try:
            as_of = pd.Timestamp(
                pd.to_datetime(d.name.removeprefix(_PREFIX), format="%Y%m%dT%H%M%S")
            )
            info = json.loads((d / _INFO).read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise ScoringError(
                f"history {str(root)!r}: run {d.name!r} cannot be read ({e}); remove that "
                "folder or score that as_of again"
            ) from e
        runs.append(HistoryRun(as_of, d, info))
    return runs


def previous_run(history: str | Path, as_of: pd.Timestamp) -> HistoryRun | None:
    """The newest run strictly before ``as_of`` (None if there is none)."""
    earlier = [r for r in list_runs(history) if r.as_of < as_of]
    return earlier[-1] if earlier else None


class HistoryWriter:
    """Streams one run's scores into a hidden folder of ``history``; :meth:`commit` adds
    ``run.json`` and swaps the folder into place (module docs). Leaving the ``with`` block
    without a commit removes everything written."""

    def __init__(
        self,
        history: str | Path,
        as_of: pd.Timestamp,
        *,
        n_reasons: int,
        metadata: dict[bytes, bytes],
        columns: pd.DataFrame,
        row_group_size: int,
    ):
        self.root = Path(history)
        _check_dir(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._clean_stale()
        self.final = self.root / partition_name(as_of)
        self.tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        self.tmp.mkdir()
        self._scores = ScoresWriter(
            self.tmp / _SCORES,
            "parquet",
            n_reasons=n_reasons,
            metadata=metadata,
            columns=columns,
            row_group_size=row_group_size,
        )
        self._done = False

    def _clean_stale(self) -> None:
        """Hidden leftovers of runs that died (other processes' live temp dirs are young)."""
        import time

        for d in self.root.glob(".*"):
            try:
                if d.is_dir() and time.time() - d.stat().st_mtime > 24 * 3600:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._done:
            self._scores.__exit__(None, None, None)
            shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, chunk: pd.DataFrame) -> None:
        self._scores.write(chunk)

    def commit(self, info: Mapping[str, Any]) -> Path:
        self._scores.commit()
        (self.tmp / _INFO).write_text(
            json.dumps(jsonable(info), indent=1, sort_keys=True), encoding="utf-8"
        )
        old = None
        if self.final.exists():
            old = self.root / f".old-{uuid.uuid4().hex}"
            os.rename(self.final, old)
        os.rename(self.tmp, self.final)
        self._done = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final


# --- trend -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Previous:
    """The previous run, indexed for lookups: score, stage and reason points per lead."""

    as_of: pd.Timestamp
    score: dict[str, int]
    stage: dict[str, str]
    points: dict[str, dict[str, tuple[float, str]]]

    @classmethod
    def of(cls, run: HistoryRun) -> Previous:
        return cls.from_frame(run.scores(), run.as_of)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, as_of: pd.Timestamp) -> Previous:
        """From a scores frame (``lead_id``, ``score``, ``reasons``; ``stage`` if event mode)."""
        keys = frame["lead_id"].astype(str).tolist()
        stages = (
            frame["stage"].astype(str).tolist() if "stage" in frame.columns else [""] * len(keys)
        )
        points = {
            k: {
                str(r.get("group")): (100.0 * float(r.get("effect") or 0.0), str(r.get("text")))
                for r in (rs if isinstance(rs, list | np.ndarray) else [])
            }
            for k, rs in zip(
                keys, frame["reasons"] if "reasons" in frame else [[]] * len(keys), strict=True
            )
        }
        return cls(
            pd.Timestamp(as_of),
            dict(
                zip(keys, pd.to_numeric(frame["score"]).round().astype(int).tolist(), strict=True)
            ),
            dict(zip(keys, stages, strict=True)),
            points,
        )


def _changes(now: Sequence[Any], before: Mapping[str, tuple[float, str]], since: str) -> str:
    current = {
        str(r.get("group")): (100.0 * float(r.get("effect") or 0.0), str(r.get("text")))
        for r in now
    }
    moves = []
    for g in current.keys() | before.keys():
        a, text_now = current.get(g, (0.0, ""))
        b, text_before = before.get(g, (0.0, ""))
        d = round(a - b, 1)
        if abs(d) >= 1.0:
            moves.append((-abs(d), g, d, text_now or text_before))
    moves.sort()
    return "; ".join(f"{text}: {d:+.1f} pts since {since}" for _, _, d, text in moves[:2])


def add_trend(chunk: pd.DataFrame, previous: Previous | None, trend_points: int) -> pd.DataFrame:
    """``chunk`` with :data:`TREND_COLUMNS` appended (module docs); all empty without a
    previous run, except ``trend`` = ``New``."""
    out = chunk.copy()
    n = len(out)
    prev_score = pd.array([pd.NA] * n, dtype="Int64")
    change = pd.array([pd.NA] * n, dtype="Int64")
    trend = np.full(n, "New", dtype=object)
    changes = np.full(n, "", dtype=object)
    if previous is not None:
        since = str(previous.as_of.date())
        keys = out["lead_id"].astype(str).tolist()
        stages = out["stage"].astype(str).tolist() if "stage" in out.columns else [""] * n
        scores = out["score"].astype(int).tolist()
        for i, (k, st, sc, rs) in enumerate(zip(keys, stages, scores, out["reasons"], strict=True)):
            was = previous.score.get(k)
            if was is None:
                continue
            prev_score[i] = was
            before = previous.stage.get(k, "")
            if before != st:
                moved_on = (
                    st in FUNNEL and before in FUNNEL and FUNNEL.index(st) > FUNNEL.index(before)
                )
                trend[i] = "Advanced" if moved_on else "New"
                continue
            d = sc - was
            change[i] = d
            trend[i] = (
                "Improving"
                if d >= trend_points
                else "Declining"
                if d <= -trend_points
                else "Steady"
            )
            changes[i] = _changes(list(rs), previous.points.get(k, {}), since)
    out["previous_score"] = prev_score
    out["score_change"] = change
    out["trend"] = pd.array(trend, dtype="string")
    out["changes"] = pd.array(changes, dtype="string")
    return out
