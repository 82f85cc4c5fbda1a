"""Layer 2, model: the stage-model type and its calibration, the rolling backtest, training (one
path for event and flat mode), evaluation and the plain-file bundle. Imports only from below."""
