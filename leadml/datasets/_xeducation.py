"""Reader for the X Education ``Leads.csv`` flat CRM export (upGrad "Lead Scoring Case Study").

One row per lead, 37 columns, no timestamps and no event history: the kind of flat table
:mod:`leadml.data.flat` is for. :func:`load_x_education` reads the file and checks it is the expected
export; it does **not** clean it (``Select`` placeholders, ``google``/``Google``, constant columns
are left for :func:`leadml.data.flat.clean_flat`, so the adapter shows the data as it is).

Field mapping
-------------
Column names are kept as exported: in flat mode they are the reason texts a rep reads
("Total Time Spent on Website: 1532").

=====================================  ==================================================
column(s)                              role in leadml
=====================================  ==================================================
``Converted``                          target (:data:`X_EDUCATION_TARGET`), 0/1, 38.5% ones
``Prospect ID``                        lead id (:data:`X_EDUCATION_ID`), a UUID; never a feature
``Lead Number``                        sequential number, the only stand-in for arrival order
                                       (:data:`X_EDUCATION_ORDER`); never a feature
``Lead Origin``, ``Lead Source``,      fit attributes and form answers (categorical)
``Country``, ``City``,
``Specialization``, ``What is your
current occupation``, ``How did you
hear about X Education``, ``What
matters most to you in choosing a
course``, the Yes/No flags
``TotalVisits``, ``Total Time Spent    pre-aggregated engagement (numeric). Cumulative at
on Website``, ``Page Views Per         export time, so they may include visits after the
Visit``                                outcome; the data cannot tell
``Tags``, ``Lead Quality``,            **leaky** (:data:`X_EDUCATION_LEAKY`): written by sales
``Last Activity``, ``Last Notable      after working the lead, or last-state snapshots taken
Activity``                             at export time (dictionary and PROVENANCE.md)
``Lead Profile``, ``Asymmetrique       **suspect** (:data:`X_EDUCATION_SUSPECT`): scores and
Activity/Profile Index/Score``         profiles assigned internally at an unknown time
=====================================  ==================================================

The leakage guard (:func:`leadml.data.leakage.check_leakage`) finds all eight of these on its own;
the constants exist so a benchmark can state exactly what was excluded.

Examples
--------
>>> import io
>>> csv = io.StringIO(
...     "Prospect ID,Lead Number,Converted,Lead Source,Tags\\r\\n"
...     "a1,660737,0,Olark Chat,Ringing\\r\\n"
...     "b2,660728,1,google,Closed by Horizzon\\r\\n"
... )
>>> load_x_education(csv, required=("Prospect ID", "Lead Number", "Converted")).shape
(2, 5)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from leadml.data.contracts import DataContractError, Problem

__all__ = [
    "X_EDUCATION_COLUMNS",
    "X_EDUCATION_ID",
    "X_EDUCATION_LEAKY",
    "X_EDUCATION_ORDER",
    "X_EDUCATION_SUSPECT",
    "X_EDUCATION_TARGET",
    "load_x_education",
]

X_EDUCATION_TARGET = "Converted"
X_EDUCATION_ID = "Prospect ID"
X_EDUCATION_ORDER = "Lead Number"
X_EDUCATION_LEAKY: tuple[str, ...] = (
    "Tags",
    "Lead Quality",
    "Last Activity",
    "Last Notable Activity",
)
X_EDUCATION_SUSPECT: tuple[str, ...] = (
    "Lead Profile",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
)
#: The 37 columns of the published export, in file order.
X_EDUCATION_COLUMNS: tuple[str, ...] = (
    "Prospect ID",
    "Lead Number",
    "Lead Origin",
    "Lead Source",
    "Do Not Email",
    "Do Not Call",
    "Converted",
    "TotalVisits",
    "Total Time Spent on Website",
    "Page Views Per Visit",
    "Last Activity",
    "Country",
    "Specialization",
    "How did you hear about X Education",
    "What is your current occupation",
    "What matters most to you in choosing a course",
    "Search",
    "Magazine",
    "Newspaper Article",
    "X Education Forums",
    "Newspaper",
    "Digital Advertisement",
    "Through Recommendations",
    "Receive More Updates About Our Courses",
    "Tags",
    "Lead Quality",
    "Update me on Supply Chain Content",
    "Get updates on DM Content",
    "Lead Profile",
    "City",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
    "I agree to pay the amount through cheque",
    "A free copy of Mastering The Interview",
    "Last Notable Activity",
)
_NUMERIC = (
    "Lead Number",
    "TotalVisits",
    "Total Time Spent on Website",
    "Page Views Per Visit",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
)


def load_x_education(
    path: str | Path | IO[str],
    *,
    required: Sequence[str] = X_EDUCATION_COLUMNS,
) -> pd.DataFrame:
    """Read ``Leads.csv`` and check it is the X Education export.

    Parameters
    ----------
    path : str, Path or text file
        The CSV (CRLF or LF line endings; ``.csv.gz`` works too).
    required : sequence of str
        Columns that must be present (default: all 37 of the published export).

    Returns
    -------
    DataFrame
        One row per lead, original column names, ``Converted`` as int64 0/1 and the numeric
        columns as float64 (``Lead Number`` as int64). Values are not cleaned.

    Raises
    ------
    DataContractError
        Every problem at once: missing columns, a ``Converted`` that is not 0/1, missing or
        duplicate ``Prospect ID``.
    """
    raw = pd.read_csv(path, low_memory=False)
    # Some copies end every line with a comma, which pandas reads as an empty extra column.
    empty_extra = [c for c in raw.columns if str(c).startswith("Unnamed:") and raw[c].isna().all()]
    table = raw.drop(columns=empty_extra)
    table.columns = [str(c).strip() for c in table.columns]
    problems: list[Problem] = []
    missing = [c for c in required if c not in table.columns]
    if missing:
        problems.append(
            Problem(
                "Leads.csv",
                None,
                f"missing column(s) {', '.join(map(repr, missing[:8]))}"
                + (f" and {len(missing) - 8} more" if len(missing) > 8 else ""),
                fix="Expected the X Education Leads.csv export (see leadml.datasets."
                "X_EDUCATION_COLUMNS); pass the right file.",
            )
        )
    if X_EDUCATION_TARGET in table.columns:
        target = pd.to_numeric(table[X_EDUCATION_TARGET], errors="coerce")
        bad = ~target.isin([0, 1]).to_numpy()
        if bad.any():
            problems.append(
                Problem(
                    "Leads.csv",
                    X_EDUCATION_TARGET,
                    f"{int(bad.sum())} value(s) not 0/1",
                    tuple(int(i) for i in np.flatnonzero(bad)[:6]),
                    tuple(str(v) for v in table.loc[bad, X_EDUCATION_TARGET].head(3)),
                    "Expected 1 for converted leads and 0 otherwise.",
                )
            )
        else:
            table[X_EDUCATION_TARGET] = target.astype("int64")
    if X_EDUCATION_ID in table.columns:
        ids = table[X_EDUCATION_ID]
        bad = (ids.isna() | ids.duplicated(keep="first")).to_numpy()
        if bad.any():
            problems.append(
                Problem(
                    "Leads.csv",
                    X_EDUCATION_ID,
                    f"{int(bad.sum())} missing or duplicate id(s)",
                    tuple(int(i) for i in np.flatnonzero(bad)[:6]),
                    tuple(str(v) for v in ids[bad].head(3)),
                    "Expected one row per prospect; deduplicate the export.",
                )
            )
    if problems:
        raise DataContractError(problems)
    for col in _NUMERIC:
        if col in table.columns:
            values = pd.to_numeric(table[col], errors="coerce")
            table[col] = values.astype(
                "int64" if col == X_EDUCATION_ORDER and values.notna().all() else "float64"
            )
    return table
