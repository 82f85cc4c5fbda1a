"""Shared helpers for benchmarks: synthetic tables at scale, timing and peak memory."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from leadml.config import ColumnsConfig
from leadml.contracts import CRMData

TYPES = (
    "email_open",
    "email_click",
    "web_visit",
    "pricing_page_view",
    "content_download",
    "webinar_attended",
    "form_submit",
    "demo_request",
)


def synthetic_tables(n_leads: int, events_per_lead: int, seed: int = 0) -> CRMData:
    """Uniform random leads and events (fast to make at 50M events; for speed, not realism)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01", "s").astype("int64")
    span = 540 * 86400
    created = np.sort(rng.integers(start, start + span // 2, n_leads))
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(1, n_leads + 1, dtype=np.int64),
            "created_at": created.astype("datetime64[s]").astype("datetime64[ns]"),
            "industry": pd.Categorical(
                rng.choice(["software", "retail", "finance", "health"], n_leads)
            ),
            "company_size": pd.Categorical(
                rng.choice(["1-10", "11-50", "51-200", "201+"], n_leads)
            ),
            "annual_revenue_musd": rng.lognormal(3, 1, n_leads),
        }
    )
    n_events = n_leads * events_per_lead
    lead_idx = np.sort(rng.integers(0, n_leads, n_events))
    t = created[lead_idx] + rng.integers(0, span // 2, n_events)
    order = np.lexsort((t, lead_idx))
    events = pd.DataFrame(
        {
            "lead_id": (lead_idx[order] + 1).astype(np.int64),
            "event_type": pd.Categorical.from_codes(
                rng.integers(0, len(TYPES), n_events), categories=list(TYPES)
            ),
            "occurred_at": t[order].astype("datetime64[s]").astype("datetime64[ns]"),
        }
    )
    stages = pd.DataFrame(
        {
            "lead_id": leads["lead_id"],
            "stage": "lead",
            "changed_at": leads["created_at"],
        }
    )
    return CRMData(leads=leads, events=events, stage_changes=stages, columns=ColumnsConfig())


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
