"""Datasets: a synthetic CRM with documented true drivers, and readers for public CRM exports."""

from __future__ import annotations

from leadml.datasets._bpi2012 import (
    BPI2012_EVENT_TYPES,
    BPI2012_LABEL_EQUIVALENT,
    BPI2012_WORK_ITEMS,
    build_bpi2012_crm,
    load_bpi2012,
)
from leadml.datasets._synthetic import (
    BEHAVIOUR_WINDOW_DAYS,
    EVENT_TYPES,
    FIT_EFFECTS,
    HIGH_INTENT_EVENTS,
    INTENT_WEIGHTS,
    REVENUE_EFFECT_PER_DECADE,
    TRUE_DRIVERS,
    make_crm,
    write_crm,
)
from leadml.datasets._xeducation import (
    X_EDUCATION_COLUMNS,
    X_EDUCATION_ID,
    X_EDUCATION_LEAKY,
    X_EDUCATION_ORDER,
    X_EDUCATION_SUSPECT,
    X_EDUCATION_TARGET,
    load_x_education,
)

__all__ = [
    "BEHAVIOUR_WINDOW_DAYS",
    "BPI2012_EVENT_TYPES",
    "BPI2012_LABEL_EQUIVALENT",
    "BPI2012_WORK_ITEMS",
    "EVENT_TYPES",
    "FIT_EFFECTS",
    "HIGH_INTENT_EVENTS",
    "INTENT_WEIGHTS",
    "REVENUE_EFFECT_PER_DECADE",
    "TRUE_DRIVERS",
    "X_EDUCATION_COLUMNS",
    "X_EDUCATION_ID",
    "X_EDUCATION_LEAKY",
    "X_EDUCATION_ORDER",
    "X_EDUCATION_SUSPECT",
    "X_EDUCATION_TARGET",
    "build_bpi2012_crm",
    "load_bpi2012",
    "load_x_education",
    "make_crm",
    "write_crm",
]
