"""Measuring models and files: predictors on every backend (`predictors`), parameters, MACs,
arena, flash and latency (`metrics`, `latency`, `runtimes`), the check against limits (`check`)
and comparisons of two model files (`compare`). Reads files and graphs; never writes a model."""
