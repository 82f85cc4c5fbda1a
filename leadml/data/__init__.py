"""Layer 1, data: input contracts, the timeline, training and scoring sets, the feature spec and
engine, flat-table cleaning and the leakage guard. Imports only ``config``, ``_io``, ``_kernels``
and ``funnel``."""
