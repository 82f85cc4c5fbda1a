"""Layer 3, explain: the exact TreeSHAP engine, grouped plain-language reasons and evaluation
plots. Imports only from ``model`` and below."""
