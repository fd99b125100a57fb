"""Any plain U-Net, read from its graph: no converter of its own, no key names assumed.

The named converters (milesial, MONAI, the Keras models) know one project's layout each. This
source knows none: it reads the U-Net's graph with the framework-free reader (:mod:`unet_graph`)
through the front-end of whatever holds the graph, and ties each canonical tensor to the source's
own name from there.

- **A state dict and its class** (``.pth``, ``.pt``, ``.pkl``, ``.bin``, a checkpoint dict that
  wraps one, DataParallel's ``module.`` keys; ``--source-model MODULE:CLASS --source-args JSON``):
  the class is built and traced (:func:`unet_torch.graph.read_torch_graph`), the state dict is
  loaded into it strictly, and the mapping gives the canonical weights. The reverse writes the
  class's own keys (:func:`module_source`'s ``write``), which its ``load_state_dict(strict=True)``
  takes.
- **A Keras builder function and a** ``.weights.h5`` (``--source-model unet.py:build_unet
  --source-args '{"input_shape": [256, 256, 3]}'``): the model is built, the weights loaded by its
  own ``load_weights``, and its layer graph read (:func:`unet_keras.graph.read_unet_graph`).
- **Files that carry their graph**, with no flags: an ONNX model (its front-end,
  :mod:`unet_bridge.graphs.onnx_graph`; proven against onnxruntime), a TorchScript file and a
  ``torch.export`` program (``.pt2``; proven against the loaded module itself). This project's own
  ``.onnx`` and ``.pt2`` exports are deployment artefacts and keep that meaning.

Every port is proven against the source at two input sizes where it takes more than one (an odd
one where the spec takes any size), by the noise-aware rule, before anything lands.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from unet_bridge.reads import (
    Output,
    Reference,
    SourceRead,
    keras_model_reference,
    module_reference,
    two_sizes,
)
from unet_bridge.sources import GRAPH, STATE_SUFFIXES, Source, SourceFile, register
from unet_bridge.sources import _torch as tio
from unet_runtime import suffix_in
from unet_spec import UNetSpec

NAME = GRAPH
SUFFIXES = (*STATE_SUFFIXES, ".pt2", ".onnx")
# Sizes a traced TorchScript module is exported at, first that runs (as the torch front-end tries).
_TRACE_SIZES = (64, 96, 128, 188, 252, 572)


def _output(head: str) -> Output:
    return "logits" if head == "none" else head  # type: ignore[return-value]


def proof_sizes(spec: UNetSpec, fixed: tuple[int, int] | None = None) -> tuple[int, ...]:
    """Where a source is run against the twin: its own size when it has one, else two sizes
    (:func:`~unet_bridge.reads.two_sizes`)."""
    if fixed is not None:
        if fixed[0] != fixed[1]:
            raise ValueError(
                f"the source takes {fixed[0]}x{fixed[1]} inputs only; the proof runs square ones"
            )
        return (fixed[0],)
    return two_sizes(spec)


# -- files that carry their graph ---------------------------------------------------------------
def own_artefact(path: str | Path) -> bool:
    """Whether an ``.onnx`` or ``.pt2`` file is this project's export (it carries the spec)."""
    from unet_bridge.artefacts.common import SPEC_KEY
    from unet_bridge.export import EXPORTS

    suffix = suffix_in(path, EXPORTS)
    if suffix is None:
        return False
    try:
        return SPEC_KEY in EXPORTS[suffix].read_metadata(Path(path))
    except ValueError:  # its runtime cannot load it: not ours either
        return False


def recognise(file: SourceFile) -> bool:
    """A file that carries its own graph: TorchScript, or an ``.onnx``/``.pt2`` from elsewhere
    (told from the file's path, loading nothing). A plain state dict is not recognised (it needs
    its class: ``--source-model``)."""
    if not file.path.is_file():
        return False
    suffix = suffix_in(file.path, SUFFIXES)
    if suffix in (".onnx", ".pt2"):
        return not own_artefact(file.path)
    return suffix is not None and tio.is_torchscript(file.path)


def read(file: SourceFile, spec: UNetSpec | None = None) -> SourceRead:
    """Canonical weights, the spec and the runnable source from a file that carries its graph.

    Raises:
        ValueError: A state dict (it has no graph: the message says to name its class), or a
            graph the spec cannot express (every mismatch named).
    """
    path = file.path
    suffix = suffix_in(path, SUFFIXES)
    if suffix == ".onnx":
        return _read_onnx(path, spec)
    if suffix == ".pt2":
        return _read_exported(path, spec)
    if tio.is_torchscript(path):
        return _read_script(path, spec)
    raise ValueError(
        f"{path}: a state dict carries no graph; name the class that builds it: "
        "--source-model MODULE:CLASS --source-args JSON (MODULE importable, or a file "
        "path/to/unet.py)"
    )


def _read_onnx(path: Path, spec: UNetSpec | None) -> SourceRead:
    from unet_bridge.graphs.onnx_graph import onnx_runner, read_onnx

    found = read_onnx(path)
    result = tio.reconcile(found.spec, spec, (), str(path))
    reference = Reference(
        onnx_runner(path), _output(found.spec.head), f"onnxruntime on {path.name}",
        sizes=proof_sizes(found.spec, found.input_size),
    )  # fmt: skip
    note = "; ".join(("ONNX model, spec read from its graph", *found.notes))
    return SourceRead(found.weights, result, reference, note)


def _via_onnx(proto: Any, module: Any, path: Path, spec: UNetSpec | None, what: str) -> SourceRead:
    """A torch program read through its ONNX graph, proven against the program itself."""
    from unet_bridge.graphs.onnx_graph import read_onnx

    found = read_onnx(proto, source=f"{what} {path.name}")
    result = tio.reconcile(found.spec, spec, (), str(path))
    reference = _program_reference(
        module, found.spec.head, f"the {what} in {path.name}",
        proof_sizes(found.spec, found.input_size),
    )  # fmt: skip
    note = "; ".join((f"{what}, spec read from its graph", *found.notes))
    return SourceRead(found.weights, result, reference, note)


def _program_reference(
    module: Any, head: str, description: str, sizes: tuple[int, ...]
) -> Reference:
    """A loaded TorchScript or ``torch.export`` module, run in float32 (neither can be cast to
    float64 the way a module is, so only the twin's noise counts)."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return Reference(run, _output(head), description, sizes=sizes)


def _read_script(path: Path, spec: UNetSpec | None) -> SourceRead:
    """TorchScript: torch.onnx's TorchScript exporter writes its graph as ONNX, batch norm kept
    and every tensor under its state-dict name (constant folding off), and the ONNX front-end reads
    that. Why this route: TorchScript's own IR is a third graph dialect, and the exporter already
    turns it into ONNX, which this project reads; the proof then runs the loaded ScriptModule
    itself, so a mistake anywhere on the way is refused."""
    import torch

    try:
        # The user's file is TorchScript, so TorchScript's own loader is the one that reads it;
        # torch's deprecation notice of that loader is not the user's concern here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as err:  # torch's own load errors
        raise ValueError(f"{path}: TorchScript cannot load it ({_first_line(err)})") from None
    channels = _in_channels(module, path)
    last = ""
    for size in _TRACE_SIZES:
        x = torch.zeros(1, channels, size, size)
        try:
            with torch.no_grad():
                module(x)
            buffer = io.BytesIO()
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                torch.onnx.export(
                    module, (x,), buffer, dynamo=False, do_constant_folding=False,
                    input_names=["x"], dynamic_axes={"x": {2: "h", 3: "w"}},
                )  # fmt: skip
        except Exception as err:  # it does not run or export at this size
            last = _first_line(err)
            continue
        import onnx

        proto = onnx.load_from_string(buffer.getvalue())
        return _via_onnx(proto, module, path, spec, "TorchScript module")
    raise ValueError(
        f"{path}: the TorchScript module does not run or export at {', '.join(map(str, _TRACE_SIZES))} "
        f"({last}); port its state dict with --source-model MODULE:CLASS instead"
    )


def _in_channels(module: Any, path: Path) -> int:
    """The input's channels: the first 4-D weight in the module's state dict is its first conv's."""
    for value in module.state_dict().values():
        if value.ndim == 4:
            return int(value.shape[1])
    raise ValueError(f"{path}: the module holds no convolution: not a U-Net")


def _read_exported(path: Path, spec: UNetSpec | None) -> SourceRead:
    """``torch.export`` programs: read through torch.onnx's exporter for programs (its graph
    rewriter off, so batch norm and names stay), proven against ``ep.module()`` itself."""
    import torch

    try:
        program = torch.export.load(str(path))
    except Exception as err:  # torch's own load errors
        raise ValueError(f"{path}: torch.export cannot load it ({_first_line(err)})") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            proto = torch.onnx.export(program, dynamo=True, optimize=False).model_proto
    except Exception as err:  # the exporter's own errors
        raise ValueError(
            f"{path}: its program has ops torch.onnx cannot write ({_first_line(err)}); port its "
            "state dict with --source-model MODULE:CLASS instead"
        ) from None
    return _via_onnx(proto, program.module(), path, spec, "torch.export program")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


# -- a state dict and its class ----------------------------------------------------------------
def module_source(model: Any, call: str) -> Source:
    """A source bound to the user's model (``--source-model``): a torch module, read and written
    through its traced graph, or a Keras model built by its own code, read through its layer graph.

    Raises:
        ValueError: The model is neither, cannot be traced, or is not a U-Net the spec can express
            (every mismatch named).
    """
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return _torch_source(model, call)
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):
        return _keras_source(model, call)
    raise ValueError(
        f"--source-model {call} gave a {type(model).__name__}, not a torch.nn.Module or a "
        "keras.Model"
    )


def _torch_source(module: Any, call: str) -> Source:
    from unet_torch.graph import canonical_weights, read_torch_graph, source_state

    found = read_torch_graph(module, source=call)

    def read_file(file: SourceFile, spec: UNetSpec | None = None) -> SourceRead:
        path, other = file.path, file.other
        state = _fit_prefix(file.state, module.state_dict().keys())
        tio.load_strict(module, state, f"{path} into {call}")
        weights = canonical_weights(state, found.mapping)
        result = tio.reconcile(found.spec, spec, (), str(path))
        reference = module_reference(module, call, _output(found.head))
        reference = dataclasses.replace(reference, sizes=proof_sizes(found.spec))
        parts = [f"state dict of {call}, spec read from its graph ({found.traced})", *found.notes]
        if other:
            parts.append(f"non-tensor entries set aside: {', '.join(other)}")
        return SourceRead(weights, result, reference, "; ".join(parts))

    def write(weights: Any, spec: UNetSpec, path: Path) -> Path:
        check(spec)
        state = source_state(weights, found.mapping, found.bookkeeping)
        return tio.save_state(state, path)

    def check(spec: UNetSpec) -> None:
        diff = {k: v for k, v in spec.diff(found.spec).items() if k != "head"}
        if diff:
            raise ValueError(
                f"the weights are another U-Net than {call}: "
                + ", ".join(f"{k}={a!r} ({call}: {b!r})" for k, (a, b) in diff.items())
            )

    return Source(
        name=NAME, description=f"state dict of {call}", framework="torch",
        suffixes=STATE_SUFFIXES, recognise=lambda _: False, read=read_file, write=write,
        check_spec=check,
    )  # fmt: skip


def _fit_prefix(state: dict[str, Any], expected: Any) -> dict[str, Any]:
    """The state dict under the module's own key names: a wrapper prefix stripped by
    :func:`~unet_bridge.sources._torch.state_of` is put back where the module's keys carry it."""
    expected = set(expected)
    if not expected or set(state) & expected:
        return state
    for prefix in ("module.", "model.", "_orig_mod."):
        if all(k.startswith(prefix) for k in expected):
            return {prefix + k: v for k, v in state.items()}
    return state


def _keras_source(model: Any, call: str) -> Source:
    from unet_keras.foreign.transfer import canonical_from_graph
    from unet_keras.graph import read_unet_graph

    found = read_unet_graph(model, call)

    def read_file(file: SourceFile, spec: UNetSpec | None = None) -> SourceRead:
        path = file.path
        try:
            model.load_weights(str(path))
        except Exception as err:  # Keras' own errors: the file does not fit the model
            raise ValueError(f"{path} into {call}: {_first_line(err)}") from None
        # The graph read above holds the model's own layers, which now hold the file's weights.
        result = tio.reconcile(found.spec, spec, (), str(path))
        parts = [f"weights of {call}, spec read from its layer graph", *found.notes]
        weights = canonical_from_graph(found)
        return SourceRead(weights, result, keras_model_reference(model, result), "; ".join(parts))

    return Source(
        name=NAME, description=f"weights of {call}", framework="keras",
        suffixes=(".weights.h5", ".h5", ".keras"), recognise=lambda _: False, read=read_file,
    )  # fmt: skip


SOURCE = register(
    Source(
        name=NAME,
        description="any plain U-Net read from its graph: TorchScript, .pt2 and .onnx files with "
        "no flags, a state dict with its class (--source-model)",
        framework="torch",
        suffixes=SUFFIXES,
        recognise=recognise,
        read=read,
        for_model=module_source,
    )
)
