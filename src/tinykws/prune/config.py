"""Configs of the prune stage: which method, how much, and how the pruned network is retrained.

A recipe's `[prune]` table is a `PruneConfig`:

    [prune]
    method = "taylor"          # taylor | l1 | l2 | linf | magnitude | gradual
    amount = 0.5               # l1/l2/linf: fraction of channels; magnitude: fraction of weights
    scope = "layer"            # "layer": the fraction of every layer; "global": network-wide
    [prune.taylor]             # TaylorConfig (MATLAB's taylorPrunableNetwork loop)
    max_iterations = 16
    batch_size = 128           # clips per fine-tuning mini-batch
    [prune.retrain]            # a TrainConfig; default: MATLAB's 30 epochs of SGDM, lr 1e-3
    epochs = 30
    monitor = "val_loss"       # keep the epoch with the lowest validation loss (or
                               # "val_accuracy": the highest validation accuracy)
    [prune.sweep]              # optional: accuracy vs size/latency over several amounts
    amounts = [0.1, 0.2, 0.35, 0.5, 0.65]

Several sweeps are an array of tables, each with an optional `name` (default: its method);
each writes its own prune/sweep-<name>.json and .png (one unnamed sweep keeps sweep.json):

    [[prune.sweep]]
    name = "structured"
    method = "l1"
    [[prune.sweep]]
    name = "unstructured"
    method = "magnitude"

Example:
    >>> from tinykws.config import from_dict
    >>> cfg = from_dict(PruneConfig, {"method": "l1", "amount": 0.25})
    >>> cfg.method, cfg.amount, cfg.retrain.epochs
    ('l1', 0.25, 30)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinykws.config import check_choice, check_file_name, check_range, labelled_tables
from tinykws.data.augment import AugmentConfig
from tinykws.errors import TinyKWSError
from tinykws.train.loop import TrainConfig

METHODS = ("taylor", "l1", "l2", "linf", "magnitude", "gradual")
NORM_METHODS = ("l1", "l2", "linf")
SCOPES = ("layer", "global")


def check_amount(name: str, amount: float) -> None:
    """A pruning fraction must be in [0, 1): removing everything leaves no network."""
    check_range(name, amount, 0.0, 1.0, high_open=True)


@dataclass(frozen=True)
class TaylorConfig:
    """The Taylor pruning loop (Molchanov et al. 2017; MATLAB's taylorPrunableNetwork example).

    Attributes:
        max_iterations: pruning iterations (each: fine-tune, score, remove filters).
        max_to_prune: filters removed per iteration, at most.
        min_prunables: stop when fewer prunable filters than this remain.
        target_macs: stop once this fraction of the network's MACs is removed (0: run every
            iteration). Filters differ in cost, so a MACs target says what the device gains.
        minibatches: mini-batches of fine-tuning (and score accumulation) per iteration.
        batch_size: clips per mini-batch.
        lr, momentum: SGD with momentum; the velocity is reset at every iteration.
        normalize: divide each layer's scores by their L2 norm before ranking
            (Molchanov's per-layer normalisation) instead of comparing raw scores.
        augment: fine-tune on augmented audio instead of the cached features.
        seed: mini-batch order and augmentation.
        device: "auto", "cpu" or "cuda".
        unknown_weight: multiplies the loss weight of `_unknown_`, as in training.
    """

    max_iterations: int = 16
    max_to_prune: int = 8
    min_prunables: int = 5
    target_macs: float = 0.0
    minibatches: int = 50
    batch_size: int = 128
    lr: float = 1e-2
    momentum: float = 0.9
    normalize: bool = False
    augment: bool = False
    seed: int = 0
    device: str = "auto"
    unknown_weight: float = 1.0

    def __post_init__(self):
        for name in ("max_iterations", "max_to_prune", "minibatches", "batch_size"):
            if getattr(self, name) < 1:
                raise TinyKWSError(
                    f"prune.taylor.{name} must be at least 1; got {getattr(self, name)}"
                )
        if self.min_prunables < 0 or self.lr <= 0 or self.unknown_weight <= 0:
            raise TinyKWSError(
                "prune.taylor.min_prunables must be >= 0, prune.taylor.lr and "
                "prune.taylor.unknown_weight > 0"
            )
        check_range("prune.taylor.momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_amount("prune.taylor.target_macs", self.target_macs)
        check_choice("prune.taylor.device", self.device, ("auto", "cpu", "cuda"))


@dataclass(frozen=True)
class GradualConfig:
    """Gradual magnitude pruning while training (TF Model Optimization's PolynomialDecay).

    Sparsity rises from `initial_sparsity` at `begin_step` to `final_sparsity` at `end_step`
    along a cubic (`power`) curve; masks are recomputed every `frequency` training steps.
    `end_step = 0` ends the ramp after three quarters of the training steps (rounded down to a
    pruning step), leaving the rest of training to recover at the final sparsity. The training
    run is `[prune.retrain]`.
    """

    initial_sparsity: float = 0.5
    final_sparsity: float = 0.85
    begin_step: int = 0
    end_step: int = 0
    frequency: int = 100
    power: float = 3.0
    scope: str = "layer"

    def __post_init__(self):
        check_amount("prune.gradual.initial_sparsity", self.initial_sparsity)
        check_amount("prune.gradual.final_sparsity", self.final_sparsity)
        check_choice("prune.gradual.scope", self.scope, SCOPES)
        if self.begin_step < 0 or self.frequency < 1 or self.power <= 0:
            raise TinyKWSError(
                "prune.gradual: begin_step must be >= 0, frequency >= 1 and power > 0"
            )
        if self.end_step and self.end_step <= self.begin_step:
            raise TinyKWSError(
                f"prune.gradual.end_step ({self.end_step}) must come after begin_step "
                f"({self.begin_step}); or 0 for three quarters of training"
            )


def _matlab_retrain() -> TrainConfig:
    # MATLAB's study retrains the pruned network for 30 epochs of SGDM, lr 1e-3 x0.1 every 5,
    # and keeps the network of the epoch with the lowest validation loss.
    return TrainConfig(
        monitor="val_loss",
        epochs=30,
        optimizer="sgd",
        lr=1e-3,
        momentum=0.9,
        schedule="step",
        step_epochs=5,
        step_gamma=0.1,
        label_smoothing=0.0,
    )


def _sweep_retrain() -> TrainConfig:
    # The TinyConv study fine-tunes each pruned model for 10 epochs at lr 1e-4.
    return TrainConfig(
        epochs=10,
        optimizer="adam",
        lr=1e-4,
        schedule="constant",
        weight_decay=0.0,
        label_smoothing=0.0,
        augment=AugmentConfig(enabled=False),
    )


@dataclass(frozen=True)
class PruneSweepConfig:
    """Prune at several amounts, each with and without fine-tuning, and plot accuracy against
    parameters, MACs and measured batch-1 latency.

    Attributes:
        method: l1, l2, linf (channels removed) or magnitude (weights zeroed).
        name: what the report and the file names call the sweep ("" means the method).
        amounts: the fractions to try, each in [0, 1).
        scope: "layer" or "global".
        fine_tune: the fine-tuning run of the "with fine-tuning" curve.
        latency_runs: timed batch-1 forward passes per model (the median is reported).
    """

    method: str = "l1"
    name: str = ""
    amounts: tuple[float, ...] = (0.1, 0.2, 0.35, 0.5, 0.65)
    scope: str = "layer"
    fine_tune: TrainConfig = field(default_factory=_sweep_retrain)
    latency_runs: int = 50

    def __post_init__(self):
        check_choice("prune.sweep.method", self.method, (*NORM_METHODS, "magnitude"))
        check_choice("prune.sweep.scope", self.scope, SCOPES)
        for amount in self.amounts:
            check_amount("prune.sweep.amounts", amount)
        if self.latency_runs < 1:
            raise TinyKWSError("prune.sweep.latency_runs must be at least 1")
        check_file_name("prune.sweep.name", self.name)

    @property
    def label(self) -> str:
        """The sweep's name in the report and its file names: `name`, or else the method."""
        return self.name or self.method


def prune_sweeps(value, where: str = "prune.sweep") -> tuple[PruneSweepConfig, ...]:
    """One sweep table, an array of them (`[[prune.sweep]]`), configs, or None -> the sweeps."""
    return labelled_tables(PruneSweepConfig, value, where)


@dataclass(frozen=True)
class PruneConfig:
    """What the prune stage (and `tinykws.prune.prune`) does.

    Attributes:
        method: "taylor" (activation x gradient filter scores, iterative), "l1" / "l2" /
            "linf" (filter norms, one shot), "magnitude" (unstructured L1 masks) or "gradual"
            (magnitude masks that grow during `retrain`).
        amount: fraction removed by l1/l2/linf (channels) and magnitude (weights), in [0, 1).
        scope: "layer" (each layer loses `amount`) or "global" (one ranking over the network).
        taylor: the Taylor loop.
        gradual: the gradual schedule.
        retrain: training of the pruned network (for "gradual": the run during which it prunes);
            its `monitor` ("val_accuracy" or "val_loss") picks the epoch kept. The default
            (no table) is the MATLAB study's: 30 epochs of SGDM, lowest validation loss kept.
        retrain_enabled: retrain after pruning (gradual always trains).
        sweep: sweeps over amounts, in order (the stage runs each whose `amounts` is non-empty);
            given as one config or table, an array of them, or None, it is stored as a tuple.
    """

    method: str = "taylor"
    amount: float = 0.5
    scope: str = "layer"
    taylor: TaylorConfig = field(default_factory=TaylorConfig)
    gradual: GradualConfig = field(default_factory=GradualConfig)
    retrain: TrainConfig = field(default_factory=_matlab_retrain)
    retrain_enabled: bool = True
    # The union lets a TOML table and an array of tables both reach __post_init__ unconverted.
    sweep: tuple[PruneSweepConfig, ...] | PruneSweepConfig | None = ()

    def __post_init__(self):
        object.__setattr__(self, "sweep", prune_sweeps(self.sweep))
        check_choice("prune.method", self.method, METHODS)
        check_choice("prune.scope", self.scope, SCOPES)
        check_amount("prune.amount", self.amount)
