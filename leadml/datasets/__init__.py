"""Datasets: a synthetic CRM with documented true drivers, readers for public CRM exports, and
importers (and writers) of Salesforce and HubSpot exports."""

from __future__ import annotations

from leadml.datasets._bpi2012 import (
    BPI2012_EVENT_TYPES,
    BPI2012_LABEL_EQUIVALENT,
    BPI2012_WORK_ITEMS,
    build_bpi2012_crm,
    load_bpi2012,
)
from leadml.datasets._crm_import import ImportReport, ImportResult
from leadml.datasets._hubspot import HUBSPOT_DEFAULT_MAPPING, import_hubspot, to_hubspot
from leadml.datasets._salesforce import (
    SALESFORCE_DEFAULT_MAPPING,
    import_salesforce,
    salesforce_id,
    to_salesforce,
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
    "HUBSPOT_DEFAULT_MAPPING",
    "INTENT_WEIGHTS",
    "REVENUE_EFFECT_PER_DECADE",
    "SALESFORCE_DEFAULT_MAPPING",
    "TRUE_DRIVERS",
    "ImportReport",
    "ImportResult",
    "X_EDUCATION_COLUMNS",
    "X_EDUCATION_ID",
    "X_EDUCATION_LEAKY",
    "X_EDUCATION_ORDER",
    "X_EDUCATION_SUSPECT",
    "X_EDUCATION_TARGET",
    "build_bpi2012_crm",
    "import_hubspot",
    "import_salesforce",
    "load_bpi2012",
    "load_x_education",
    "make_crm",
    "salesforce_id",
    "to_hubspot",
    "to_salesforce",
    "write_crm",
]
