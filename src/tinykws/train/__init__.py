"""Training: `fit` (`loop`), its resumable state (`state`), evaluation (`evaluate`) and
DistributedDataParallel when launched by torchrun (`distributed`)."""
