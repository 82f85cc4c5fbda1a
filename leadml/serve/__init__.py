"""Layer 4, serve: the scores-file contract, scoring (event and flat mode) and the Spark adapter.
Imports only from ``explain`` and below; never MLflow."""
