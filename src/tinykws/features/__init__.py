"""The front end: one definition of log-mel / MFCC / bark features.

- `config`: `FrontendConfig` and its presets;
- `spectrum`, `filterbanks`: framing, windows, FFT power, mel / bark / DCT matrices (numpy);
- `normalization`: per-coefficient mean and standard deviation;
- `frontend`: the numpy reference (numpy only);
- `batch`: the torch batch front end and cached dataset features;
- `incremental`: the same frames computed a chunk at a time for streaming.
"""
