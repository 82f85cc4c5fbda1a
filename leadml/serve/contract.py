"""The scores file, defined once: columns, dtypes, order and Parquet metadata.

Every writer (the local scorer, Spark, flat mode) and every reader (the report, notebooks) uses
this module, so the files they exchange cannot drift apart.

Columns
    Event mode: :data:`OUTPUT_COLUMNS` (``lead_id, as_of, stage, p_prospect, p_opportunity,
    score, tier, reasons, base_score, other_points, model_version``), then the display columns
    the leads table has (:data:`DISPLAY_COLUMNS`) and :data:`ACTIVITY_COLUMNS`. Flat mode:
    :data:`FLAT_COLUMNS` (``lead_id, as_of, probability, score, tier, reasons, base_score,
    other_points, model_version``). ``lead_id`` is written as it was read (integers stay
    integers; zero-padded text stays text). Points add up:
    ``base_score + Σ 100·effect over reasons + other_points = score`` exactly (tenths of a point;
    :mod:`leadml.explain.reasons`, Points); both are NaN when no reasons were asked for.

Order
    :func:`call_order`: ``score`` descending, then ``lead_id`` ascending.

Parquet metadata (``leadml.*`` keys, :func:`scores_attrs`)
    ``as_of`` (ISO), ``model_versions``, ``tier_info`` (the tiers' observed conversion of the
    main model), ``tier_info_by_model``, ``horizon_days``, ``skipped`` (JSON) and ``target``
    (the flat model's outcome column; empty in event mode). Spark and local files carry the same
    keys and values.

CSV
    The same columns with ``reasons`` flattened to ``reason_1 .. reason_N`` sentences
    (:func:`leadml.explain.reasons.reason_sentence`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leadml._io import atomic_path, check_target
from leadml._json import jsonable
from leadml.data.contracts import coerce_ids
from leadml.explain.reasons import parse_reason_sentence, reason_sentence
from leadml.model.stage import StageModel

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "ACTIVITY_COLUMNS",
    "DISPLAY_COLUMNS",
    "FLAT_COLUMNS",
    "OUTPUT_COLUMNS",
    "REQUIRED_COLUMNS",
    "SKIP_LABELS",
    "required_columns",
    "ScoringError",
    "ScoresWriter",
    "call_order",
    "jsonable",
    "model_version",
    "output_format",
    "parquet_metadata",
    "read_scores",
    "scores_attrs",
    "write_scores",
]

OUTPUT_COLUMNS: tuple[str, ...] = (
    "lead_id",
    "as_of",
    "stage",
    "p_prospect",
    "p_opportunity",
    "score",
    "tier",
    "reasons",
    "base_score",
    "other_points",
    "model_version",
)
FLAT_COLUMNS: tuple[str, ...] = (
    "lead_id",
    "as_of",
    "probability",
    "score",
    "tier",
    "reasons",
    "base_score",
    "other_points",
    "model_version",
)
DISPLAY_COLUMNS: tuple[str, ...] = ("name", "company", "job_title", "lead_source", "owner")
ACTIVITY_COLUMNS: tuple[str, ...] = ("last_activity_at", "last_activity_type")
#: The ``skipped`` metadata's label for each stage that is not scored.
SKIP_LABELS: dict[str, str] = {
    "opportunity": "already opportunity",
    "customer": "already customer",
    "disqualified": "disqualified",
    "lost": "lost",
}
#: What every scores file has, in either mode; :func:`required_columns` adds each mode's own.
REQUIRED_COLUMNS: tuple[str, ...] = ("lead_id", "as_of", "score", "tier", "reasons")


def required_columns(frame: pd.DataFrame) -> tuple[str, ...]:
    """The columns a reader needs from ``frame``: flat mode's (it has ``probability``) or event
    mode's, in file order."""
    mode = FLAT_COLUMNS if "probability" in frame.columns else OUTPUT_COLUMNS
    # Files written before the points columns existed stay readable.
    optional = ("model_version", "base_score", "other_points")
    return tuple(c for c in mode if c in REQUIRED_COLUMNS or c not in optional)


class ScoringError(ValueError):
    """A scoring request cannot be carried out; the message says what to change."""


def call_order(frame: pd.DataFrame) -> np.ndarray:
    """Row positions of ``frame`` in the file's order: score descending, then lead_id."""
    return np.asarray(
        frame.reset_index(drop=True)
        .sort_values(["score", "lead_id"], ascending=[False, True], kind="stable")
        .index
    )


def model_version(model: StageModel) -> str:
    """Registry version (``leadml-prospect:3``) or, for a local bundle, a content digest."""
    v = model.metadata.get("model_version")
    if v:
        return str(v)
    h = hashlib.sha256(model.booster.model_to_string().encode())
    if model.linear is not None:
        h.update(json.dumps(model.linear.to_dict(), sort_keys=True).encode())
    digest = h.hexdigest()[:12]
    return f"leadml-{model.transition}@bundle:{digest}"


def scores_attrs(
    models: Mapping[str, StageModel],
    as_of: pd.Timestamp,
    *,
    skipped: Mapping[str, int],
    row_group_size: int,
) -> dict[str, Any]:
    """The metadata a scores file carries (module docs), from the models that scored it."""
    by_model = {t: dict(m.metadata.get("tier_info") or {}) for t, m in models.items()}
    main = "prospect" if "prospect" in models else next(iter(models), "")
    flat = next((m for m in models.values() if m.metadata.get("mode") == "flat"), None)
    return {
        "as_of": as_of.isoformat(),
        "model_versions": ", ".join(model_version(m) for m in models.values()),
        "tier_info": by_model.get(main, {}),
        "tier_info_by_model": by_model,
        "horizon_days": {
            t: int(m.metadata["horizon_days"])
            for t, m in models.items()
            if m.metadata.get("horizon_days") is not None
        },
        "skipped": dict(skipped),
        "target": str(flat.metadata.get("target", "")) if flat is not None else "",
        "row_group_size": int(row_group_size),
    }


_FORMATS = ("parquet", "csv")


def output_format(path: Path, fmt: str | None, default: str = "parquet") -> str:
    """``parquet`` or ``csv``: ``fmt`` if given, else by the file's extension, else ``default``."""
    if fmt is not None:
        if fmt not in ("parquet", "csv"):
            raise ScoringError(f"--format {fmt!r}: expected parquet or csv")
        return fmt
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return default


def _reason_type() -> pa.DataType:
    import pyarrow as pa

    return pa.list_(
        pa.struct(
            [
                ("group", pa.string()),
                ("text", pa.string()),
                ("direction", pa.string()),
                ("effect", pa.float64()),
                ("evidence", pa.string()),
            ]
        )
    )


def _arrow_schema(frame: pd.DataFrame, metadata: dict[bytes, bytes]) -> pa.Schema:
    import pyarrow as pa

    known = {
        "as_of": pa.timestamp("ns"),
        "stage": pa.string(),
        "p_prospect": pa.float64(),
        "p_opportunity": pa.float64(),
        "probability": pa.float64(),
        "score": pa.int64(),
        "tier": pa.string(),
        "reasons": _reason_type(),
        "base_score": pa.float64(),
        "other_points": pa.float64(),
        "model_version": pa.string(),
        "last_activity_at": pa.timestamp("ns"),
        "previous_score": pa.int64(),
        "score_change": pa.int64(),
        "trend": pa.string(),
        "changes": pa.string(),
        **dict.fromkeys((*DISPLAY_COLUMNS, "last_activity_type"), pa.string()),
    }
    fields = []
    for col in frame.columns:
        if col == "lead_id":
            integer = pd.api.types.is_integer_dtype(frame[col].dtype)
            typ = pa.int64() if integer else pa.string()
        elif col in known:
            typ = known[col]
        else:
            typ = pa.Array.from_pandas(frame[col]).type
            if pa.types.is_null(typ) or pa.types.is_large_string(typ):
                typ = pa.string()
            elif pa.types.is_dictionary(typ):
                typ = typ.value_type
        fields.append(pa.field(str(col), typ))
    return pa.schema(fields, metadata=metadata)


def _json(value: Any) -> str:
    """Strict JSON (:func:`jsonable`), keys sorted."""
    return json.dumps(jsonable(value), sort_keys=True)


def parquet_metadata(attrs: Mapping[str, Any], frame: pd.DataFrame) -> dict[bytes, bytes]:
    as_of = attrs.get("as_of")
    if as_of is None and len(frame) and "as_of" in frame.columns:
        as_of = pd.Timestamp(frame["as_of"].iloc[0]).isoformat()
    meta = {
        "as_of": str(as_of or ""),
        "model_versions": str(attrs.get("model_versions", "")),
        "tier_info": _json(attrs.get("tier_info", {})),
        "tier_info_by_model": _json(attrs.get("tier_info_by_model", {})),
        "horizon_days": _json(attrs.get("horizon_days", {})),
        "skipped": _json(attrs.get("skipped", {})),
        "target": str(attrs.get("target", "")),
    }
    return {f"leadml.{k}".encode(): v.encode() for k, v in meta.items()}


def _reason_columns(reasons: pd.Series, n: int) -> list[np.ndarray]:
    """``reason_1 .. reason_n``: each row's k-th reason as :func:`reason_sentence` writes it
    ("" past its last reason). An Arrow-backed column (the job's) is rendered from its arrays,
    each distinct points figure formatted once; lists of dicts one by one."""
    if not isinstance(reasons.dtype, pd.ArrowDtype):
        texts = [[reason_sentence(r) for r in rs] for rs in reasons]
        return [
            np.array([t[k] if k < len(t) else "" for t in texts], dtype=object) for k in range(n)
        ]
    import pyarrow as pa

    arr = pa.chunked_array(pa.array(reasons)).combine_chunks()
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    offsets -= offsets[0]  # a sliced array's offsets start where its slice does
    values = arr.flatten()
    direction = np.asarray(values.field("direction").to_pylist(), dtype=object)
    text = np.asarray(values.field("text").to_pylist(), dtype=object)
    effect = values.field("effect").to_numpy(zero_copy_only=False)
    uniq, inverse = np.unique(effect, return_inverse=True)
    sizes = np.array(
        ["" if math.isnan(e) else f" ({100 * e:+.1f} pts)" for e in uniq.tolist()], dtype=object
    )
    sentence = direction + " " + text + sizes[inverse.ravel()]
    counts = np.diff(offsets)
    out = []
    for k in range(n):
        col = np.full(len(counts), "", dtype=object)
        has = counts > k
        col[has] = sentence[offsets[:-1][has] + k]
        out.append(col)
    return out


class ScoresWriter:
    """Chunks in, one file out: a temp file beside the target, renamed into place on commit."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        *,
        n_reasons: int,
        metadata: dict[bytes, bytes],
        columns: pd.DataFrame,
        row_group_size: int,
    ):
        self.path = path
        self.fmt = fmt
        self.n_reasons = n_reasons
        self.row_group_size = row_group_size
        self.schema = _arrow_schema(columns, metadata) if fmt == "parquet" else None
        self._target = atomic_path(path, make_parents=False)
        self.tmp = self._target.__enter__()
        self._pq: Any = None
        self._csv: Any = None

    def __enter__(self) -> ScoresWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._close()
        self.tmp.unlink(missing_ok=True)  # not committed: leave nothing behind

    def write(self, chunk: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            assert self.schema is not None
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.tmp, self.schema)
            # One Arrow chunk per column: where Parquet pages and dictionary fallbacks fall
            # follows the input's chunks, and a chunk merged from several lead ranges
            # (leadml.serve.stream) must give the bytes a one-shot chunk gives.
            table = pa.Table.from_pandas(
                chunk, schema=self.schema, preserve_index=False
            ).combine_chunks()
            if len(chunk):
                self._pq.write_table(
                    table.replace_schema_metadata(self.schema.metadata), self.row_group_size
                )
            return
        flat = chunk.drop(columns=["reasons"])
        at = list(chunk.columns).index("reasons")
        for k, col in enumerate(_reason_columns(chunk["reasons"], self.n_reasons)):
            flat.insert(at + k, f"reason_{k + 1}", col)
        if self._csv is None:
            self._csv = open(self.tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115
            header = True
        else:
            header = False
        flat.to_csv(
            self._csv,
            index=False,
            header=header,
            lineterminator="\n",
            float_format="%.6g",
            date_format="%Y-%m-%d %H:%M:%S",
        )

    def _close(self) -> None:
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        if self._csv is not None:
            self._csv.close()
            self._csv = None

    def commit(self) -> Path:
        if self.fmt == "parquet" and self._pq is None:
            self.write(pd.DataFrame({c: [] for c in self.schema.names}))  # type: ignore[union-attr]
        self._close()
        self._target.__exit__(None, None, None)  # normal permissions, then the atomic rename
        return self.path


def write_scores(
    scores: pd.DataFrame,
    out: str | Path,
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    n_reasons: int | None = None,
    row_group_size: int | None = None,
) -> Path:
    """Write a scores frame (from :func:`score`) atomically as Parquet or CSV (module docs).

    Parameters
    ----------
    scores : DataFrame
        Its ``attrs`` become the Parquet metadata.
    out : path
        Target file; ``.csv`` means CSV unless ``fmt`` says otherwise.
    fmt : {"parquet", "csv"}, optional
    overwrite : bool
        Replace an existing file (only once the new one is complete).
    n_reasons : int, optional
        CSV ``reason_k`` columns (default 6, or the most reasons any row has if more).
    row_group_size : int, optional
        Parquet rows per row group; default ``attrs["row_group_size"]`` (the run's chunk size),
        so this file is byte-identical to the one ``leadml score`` streams.
    """
    path = Path(out)
    check_target(path, overwrite, must_be_file=True)
    kind = output_format(path, fmt)
    most = int(max((len(r) for r in scores["reasons"]), default=0))
    size = int(row_group_size or scores.attrs.get("row_group_size") or 50_000)
    with ScoresWriter(
        path,
        kind,
        n_reasons=max(n_reasons if n_reasons is not None else 6, most),
        metadata=parquet_metadata(scores.attrs, scores),
        columns=scores,
        row_group_size=size,
    ) as w:
        for s in range(0, len(scores), size):
            w.write(scores.iloc[s : s + size])
        if not len(scores):
            w.write(scores)
        return w.commit()


def read_scores(path: str | Path) -> pd.DataFrame:
    """Read a scores file written by :func:`write_scores`: Parquet ``reasons`` as lists of dicts,
    CSV ``reason_k`` sentences parsed back into ``reasons`` (without their group); the file's
    ``leadml.*`` metadata in ``attrs`` (Parquet only)."""
    p = Path(path)
    if not p.is_file():
        raise ScoringError(f"scores file {str(p)!r} does not exist; run `leadml score` first")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        try:
            frame = pd.read_csv(p, encoding="utf-8", dtype={"lead_id": str})
        except (OSError, ValueError) as e:
            raise ScoringError(f"scores file {str(p)!r} cannot be read as CSV: {e}") from e
        if "lead_id" in frame.columns and frame["lead_id"].notna().all():
            frame["lead_id"] = coerce_ids(frame["lead_id"])  # 00524 stays 00524
        for col in ("as_of", "last_activity_at"):
            if col in frame.columns:
                frame[col] = pd.to_datetime(frame[col], errors="coerce", format="mixed")
        return _reasons_from_csv(frame)
    if suffix not in (".parquet", ".pq"):
        raise ScoringError(
            f"scores file {str(p)!r}: expected a .parquet or .csv file written by `leadml score`"
        )
    import pyarrow.parquet as pq

    try:
        raw = pq.read_schema(p).metadata or {}
        frame = pd.read_parquet(p)
    except (OSError, ValueError) as e:
        raise ScoringError(f"scores file {str(p)!r} cannot be read as Parquet: {e}") from e
    for key, value in raw.items():
        name = key.decode("utf-8", "replace")
        if name.startswith("leadml."):
            text = value.decode("utf-8", "replace")
            try:
                frame.attrs[name.removeprefix("leadml.")] = json.loads(text)
            except ValueError:
                frame.attrs[name.removeprefix("leadml.")] = text
    return frame


def _reasons_from_csv(frame: pd.DataFrame) -> pd.DataFrame:
    cols = sorted(
        (c for c in frame.columns if re.fullmatch(r"reason_\d+", str(c))),
        key=lambda c: int(str(c).removeprefix("reason_")),
    )
    if not cols or "reasons" in frame.columns:
        return frame
    parsed = [
        [r for r in map(parse_reason_sentence, values) if r is not None]
        for values in frame[cols].itertuples(index=False)
    ]
    out = frame.drop(columns=cols)
    out.insert(cols and list(frame.columns).index(cols[0]), "reasons", parsed)
    return out
