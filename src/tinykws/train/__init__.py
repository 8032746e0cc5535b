"""Training: `fit` (`loop`), its resumable state (`state`), evaluation and top-1 accuracy
(`evaluate`), a float model file read back with its front end, normalisation and dataset
(`model_file`) and DistributedDataParallel when launched by torchrun (`distributed`)."""
