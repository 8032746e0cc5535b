"""Trace a float model into steps: the network as the integer graph will compute it.

`trace_steps(model, input_shape)` runs `torch.fx` symbolic tracing and turns the traced nodes
into a list of `Step`s, fusing what the integer ops fuse:

- a BatchNorm right after a conv or linear layer joins it (`Step.bn`; folded later),
- a ReLU / ReLU6 right after a conv, linear, pool or add becomes its fused activation,
- a ZeroPad2d right before a conv becomes part of the conv's padding,
- a SubSpectralNorm (BC-ResNet) right after a depthwise conv joins it (`Step.ssn`): its scale
  and shift change along frequency, so it folds into one set of depthwise weights per
  sub-band, each computing its band's rows,
- SiLU becomes a step of its own (LOGISTIC and MUL in the integer graph),
- an average pool whose window spans every bin (and every frame, or one frame at stride 1)
  becomes a mean step, whose output gets a scale of its own: an AVERAGE_POOL_2D would keep its
  input's scale, too coarse for an average of many values,
- dropout is kept (it acts during QAT) but lowers to nothing.

Tensors are NCHW as in PyTorch (H = frames, W = bins); `Step.shape` is the output shape for a
batch of one. Any other layer is refused with one line naming it (path and type).

Example:
    >>> from tinykws.models import build_model, model_config
    >>> model = build_model(model_config("tinyconv", 4, (49, 40)))
    >>> [(s.kind, s.activation) for s in trace_steps(model).steps]
    [('conv', 'RELU'), ('dropout', 'NONE'), ('flatten', 'NONE'), ('linear', 'NONE')]
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from tinykws.errors import TinyKWSError
from tinykws.ir.builder import pair
from tinykws.models.bcresnet import SubSpectralNorm

WEIGHTED = ("conv", "depthwise", "linear")
ACTIVATABLE = (*WEIGHTED, "max_pool", "avg_pool", "add")
# Why some known layers have no integer form with the graph's ops.
REASONS = {
    "SubSpectralNorm": "it folds only into the depthwise conv right before it",
}
SUPPORTED = (
    "Conv2d (regular or depthwise), Linear, BatchNorm after a conv/linear, SubSpectralNorm "
    "after a depthwise conv, ReLU, ReLU6, SiLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), "
    "Flatten, Dropout, ZeroPad2d, +"
)


@dataclass
class Step:
    """One layer of the integer graph.

    Attributes:
        name: the output tensor's name (unique; the fx node name).
        kind: conv, depthwise, linear, max_pool, avg_pool, mean, add, silu, flatten, dropout,
            pad.
        inputs: names of the input tensors ("input" is the model input).
        module: path of the PyTorch layer ("" for add).
        layer: "path (Type)" for messages.
        shape: NCHW (or (1, features)) output shape for a batch of one.
        bn: path of a BatchNorm to fold into this conv/linear ("" once folded or when none).
        ssn: path of a SubSpectralNorm after this depthwise conv ("" when none); it is never
            folded into the model, only into the weights the step quantizes and lowers.
        activation: fused activation, "NONE", "RELU" or "RELU6".
        pads: (top, bottom, left, right) zero padding of a conv or pad step.
        axes: the NCHW axes a mean step averages over: (2, 3) (global) or (3,) (the bins).
        bins: a depthwise step that first averages its input over this many bins (an average
            over every bin right before a depthwise conv of width 1, fused into it); 0 if not.
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    module: str = ""
    layer: str = ""
    shape: tuple[int, ...] = ()
    bn: str = ""
    ssn: str = ""
    activation: str = "NONE"
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    axes: tuple[int, ...] = (2, 3)
    bins: int = 0


@dataclass
class Trace:
    """The steps of a model, which tensor it outputs, and the input shape (NCHW, batch 1)."""

    steps: list[Step]
    output: str
    input_shape: tuple[int, ...]
    _by_name: dict = field(default_factory=dict, repr=False)

    def step(self, name: str) -> Step:
        if not self._by_name:
            self._by_name.update({s.name: s for s in self.steps})
        return self._by_name[name]


def trace_steps(model: nn.Module, input_shape: tuple[int, int] | None = None) -> Trace:
    """The model's steps; `input_shape` (frames, bins) defaults to `model.config.input_shape`."""
    if input_shape is None:
        input_shape = tuple(model.config.input_shape)
    try:
        graph_module = torch.fx.GraphModule(model, _Tracer().trace(model))
    except Exception as exc:  # fx raises many types; the user needs the model named
        reason = str(exc).splitlines()[0]
        raise TinyKWSError(
            f"{type(model).__name__}: cannot be traced for quantization ({reason})"
        ) from None
    shape = (1, 1, *input_shape)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()  # the shape pass must not move BatchNorm statistics
    with torch.no_grad():
        ShapeProp(graph_module).propagate(torch.zeros(shape, device=device))
    model.train(was_training)
    tracer = _StepBuilder(model)
    for node in graph_module.graph.nodes:
        tracer.visit(node)
    return Trace(tracer.steps, tracer.output, shape)


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer, keeping a SubSpectralNorm as one call (its reshapes are no ops)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SubSpectralNorm) or super().is_leaf_module(m, qualname)


class _StepBuilder:
    """Walks fx nodes in order, appending or fusing steps."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.steps: list[Step] = []
        self.tensor: dict[str, str] = {}  # fx node name -> step output name
        self.last_node: dict[str, object] = {}  # step name -> fx node now holding its output
        self.output = ""

    def visit(self, node) -> None:
        if node.op == "placeholder":
            self.tensor[node.name] = "input"
        elif node.op == "output":
            self.output = self.tensor[node.args[0].name]
        elif node.op == "call_module":
            module = self.model.get_submodule(node.target)
            handler = next((h for t, h in MODULE_HANDLERS if isinstance(module, t)), None)
            if handler is None:
                self.refuse(node, "it has no integer op")
            handler(self, node, module)
        elif node.op == "call_function" and node.target in FUNCTION_HANDLERS:
            FUNCTION_HANDLERS[node.target](self, node)
        elif node.op == "call_method" and node.target in METHOD_HANDLERS:
            METHOD_HANDLERS[node.target](self, node)
        else:
            self.refuse(
                node, f"'{getattr(node.target, '__name__', node.target)}' has no integer op"
            )

    # --- helpers ---------------------------------------------------------------------------

    def layer_name(self, node) -> str:
        if node.op == "call_module":
            return f"{node.target} ({type(self.model.get_submodule(node.target)).__name__})"
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            path, kind = list(stack.values())[-1]
            return f"{path} ({getattr(kind, '__name__', kind)})"
        return f"{node.name} (operation '{getattr(node.target, '__name__', node.target)}')"

    def refuse(self, node, reason: str):
        kind = self.layer_name(node).rpartition("(")[2].rstrip(")")
        reason = REASONS.get(kind, reason)
        raise TinyKWSError(
            f"layer {self.layer_name(node)} cannot be quantized: {reason}; supported: {SUPPORTED}"
        )

    def input_of(self, node, index: int = 0) -> str:
        arg = node.args[index]
        if not isinstance(arg, torch.fx.Node):
            self.refuse(node, "an input is a constant, not a tensor")
        return self.tensor[arg.name]

    def fusable(self, node, kinds) -> Step | None:
        """The step producing node's input, when it is of `kinds` and node is its only reader."""
        arg = node.args[0]
        if not isinstance(arg, torch.fx.Node) or arg.name not in self.tensor:
            return None
        name = self.tensor[arg.name]
        step = next((s for s in reversed(self.steps) if s.name == name), None)
        if step is None or step.kind not in kinds or self.last_node.get(name) is not arg:
            return None
        return step if len(arg.users) == 1 else None

    def add(self, node, kind: str, inputs, module: str = "", **extra) -> Step:
        step = Step(
            node.name,
            kind,
            tuple(inputs),
            module,
            self.layer_name(node),
            tuple(node.meta["tensor_meta"].shape),
            **extra,
        )
        self.steps.append(step)
        self.tensor[node.name] = step.name
        self.last_node[step.name] = node
        return step

    def fuse(self, node, step: Step) -> None:
        """`node` now computes `step`'s output (the step absorbed it)."""
        self.tensor[node.name] = step.name
        self.last_node[step.name] = node
        step.shape = tuple(node.meta["tensor_meta"].shape)


# --- handlers ---------------------------------------------------------------------------------


def _conv(b: _StepBuilder, node, conv: nn.Conv2d) -> None:
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        b.refuse(node, "use integer zero padding (padding='same'/'valid' strings are not lowered)")
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels
    if conv.groups > 1 and not depthwise:
        b.refuse(node, "grouped convolutions other than depthwise have no integer op")
    ph, pw = conv.padding
    pads, inputs, bins = (ph, ph, pw, pw), (b.input_of(node),), 0
    pad = b.fusable(node, ("pad",))
    if pad is not None:
        b.steps.remove(pad)
        pads = tuple(a + c for a, c in zip(pads, pad.pads))
        inputs = pad.inputs
    mean = b.fusable(node, ("mean",))
    one_bin = conv.kernel_size[1] == 1 and conv.dilation[1] == 1 and not pw
    if depthwise and mean is not None and mean.axes == (3,) and one_bin:
        # BC-ResNet's bin average and temporal conv: one depthwise conv over (time, all bins)
        # with the temporal weights at 1/bins of their scale, requantized once (see
        # `tinykws.quant.lower`)
        b.steps.remove(mean)
        window = pair(b.model.get_submodule(mean.module).kernel_size)  # spans every bin
        inputs, bins = mean.inputs, int(window[1])
    b.add(node, "depthwise" if depthwise else "conv", inputs, node.target, pads=pads, bins=bins)


def _linear(b: _StepBuilder, node, linear: nn.Linear) -> None:
    b.add(node, "linear", (b.input_of(node),), node.target)


def _batchnorm(b: _StepBuilder, node, bn) -> None:
    step = b.fusable(node, WEIGHTED)
    if step is None or step.bn or step.activation != "NONE":
        b.refuse(node, "a BatchNorm is folded only into the conv or linear layer right before it")
    if not bn.track_running_stats:
        b.refuse(node, "a BatchNorm without running statistics cannot be folded")
    step.bn = node.target
    b.fuse(node, step)


def _subspectral(b: _StepBuilder, node, ssn) -> None:
    step = b.fusable(node, ("depthwise",))
    if step is None or step.bn or step.ssn or step.activation != "NONE":
        b.refuse(node, REASONS["SubSpectralNorm"])
    conv = b.model.get_submodule(step.module)
    if conv.out_channels != conv.in_channels:
        b.refuse(node, "the depthwise conv before it must have a depth multiplier of 1")
    if not ssn.bn.track_running_stats:
        b.refuse(node, "a SubSpectralNorm without running statistics cannot be folded")
    step.ssn = node.target
    b.fuse(node, step)


def _silu(b: _StepBuilder, node, module=None) -> None:
    b.add(node, "silu", (b.input_of(node),), node.target if module is not None else "")


def _activation(name: str):
    def handler(b: _StepBuilder, node, module=None) -> None:
        step = b.fusable(node, ACTIVATABLE)
        if step is None or step.activation != "NONE":
            b.refuse(node, "a ReLU is fused into the conv, linear, pool or add right before it")
        step.activation = name
        b.fuse(node, step)

    return handler


def _max_pool(b: _StepBuilder, node, pool: nn.MaxPool2d) -> None:
    if any(d != 1 for d in pair(pool.dilation)):
        b.refuse(node, "dilated pooling has no integer op")
    b.add(node, "max_pool", (b.input_of(node),), node.target)


def _avg_pool(b: _StepBuilder, node, pool: nn.AvgPool2d) -> None:
    height, width = node.args[0].meta["tensor_meta"].shape[2:]
    (kh, kw), stride = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size)
    whole = kw == width and (kh == height or (kh == 1 and stride[0] == 1))
    plain = not any(pair(pool.padding)) and not pool.ceil_mode and not pool.divisor_override
    if whole and plain:
        # an average over every bin (and frame): MEAN, whose output gets its own, finer scale
        axes = (2, 3) if kh == height else (3,)
        b.add(node, "mean", (b.input_of(node),), node.target, axes=axes)
        return
    padded = any(pair(pool.padding))
    if pool.ceil_mode or (padded and pool.count_include_pad) or pool.divisor_override:
        b.refuse(
            node,
            "average pooling must not count padding (count_include_pad=False) "
            "and must not use ceil_mode or divisor_override",
        )
    b.add(node, "avg_pool", (b.input_of(node),), node.target)


def _adaptive_avg_pool(b: _StepBuilder, node, pool: nn.AdaptiveAvgPool2d) -> None:
    if pool.output_size not in (1, (1, 1), [1, 1]):
        b.refuse(node, "only a global average (output size 1) lowers, to MEAN")
    b.add(node, "mean", (b.input_of(node),), node.target)


def _flatten(b: _StepBuilder, node, module=None) -> None:
    start = module.start_dim if module is not None else (node.args[1] if len(node.args) > 1 else 0)
    end = module.end_dim if module is not None else -1
    if start != 1 or end != -1:
        b.refuse(node, "only a flatten of all dimensions after the batch lowers (to RESHAPE)")
    b.add(node, "flatten", (b.input_of(node),), node.target if module is not None else "")


def _pad(b: _StepBuilder, node, pad: nn.ZeroPad2d) -> None:
    left, right, top, bottom = pad.padding
    b.add(node, "pad", (b.input_of(node),), node.target, pads=(top, bottom, left, right))


def _dropout(b: _StepBuilder, node, module) -> None:
    b.add(node, "dropout", (b.input_of(node),), node.target)


def _identity(b: _StepBuilder, node, module=None) -> None:
    """No step: the node is its input (a folded BatchNorm leaves an Identity behind)."""
    name = b.input_of(node)
    b.tensor[node.name] = name
    arg = node.args[0]
    if b.last_node.get(name) is arg and len(arg.users) == 1:
        b.last_node[name] = node  # what follows may still fuse into the step


def _add(b: _StepBuilder, node) -> None:
    if len(node.args) != 2 or node.kwargs:
        b.refuse(node, "only the sum of two tensors lowers to ADD")
    b.add(node, "add", (b.input_of(node, 0), b.input_of(node, 1)))


MODULE_HANDLERS = [
    (nn.Conv2d, _conv),
    (nn.SiLU, _silu),
    (SubSpectralNorm, _subspectral),
    (nn.Linear, _linear),
    ((nn.BatchNorm2d, nn.BatchNorm1d), _batchnorm),
    (nn.ReLU, _activation("RELU")),
    (nn.ReLU6, _activation("RELU6")),
    (nn.MaxPool2d, _max_pool),
    (nn.AvgPool2d, _avg_pool),
    (nn.AdaptiveAvgPool2d, _adaptive_avg_pool),
    (nn.Flatten, _flatten),
    (nn.ZeroPad2d, _pad),
    ((nn.Dropout, nn.Dropout2d), _dropout),
    (nn.Identity, _identity),
]
FUNCTION_HANDLERS = {
    operator.add: _add,
    torch.add: _add,
    torch.relu: _activation("RELU"),
    torch.nn.functional.relu: _activation("RELU"),
    torch.flatten: _flatten,
    torch.nn.functional.silu: _silu,
}
METHOD_HANDLERS = {"relu": _activation("RELU"), "add": _add, "flatten": _flatten}
