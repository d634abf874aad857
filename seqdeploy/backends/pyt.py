"""PyTorch eager runner: the reference. Named ``pyt`` so that it never shadows ``torch``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqdeploy.backends.base import BaseRunner
from seqdeploy.config import PipelineConfig
from seqdeploy.errors import BackendUnavailable
from seqdeploy.spec import IOSpec

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TorchRunner"]


class TorchRunner(BaseRunner):
    """Runs the model eagerly (``inference_mode``) from an exported state_dict.

    For zoo models this is the config-built model; for cell stacks the original Python loop over
    ``nn.*Cell`` layers, not the chain of modules that was traced, so parity against it also proves the
    conversion. For ``source = "python"`` it is **the user's own module**, imported from the manifest's
    entry (this runs the user's code), built with its ``kwargs`` and loaded with the exported weights:
    the reference is the module itself, never a rebuild of it from a description.

    Args:
        name: Backend name for reports.
        spec: IOSpec of the graph to mirror (``kind`` selects the sequence or the step module).
        config: The model's config.
        weights: Path of the state_dict (loaded with ``weights_only=True``), or ``None`` to use
            ``module`` as given.
        device: ``"cpu"`` or ``"cuda"``.
        threads: ``torch.set_num_threads`` while loaded (``None`` = leave as is).
        module: An already built module (tests, export self-check).
    """

    one_thread = True  # torch's CPU thread pool belongs to the calling thread (see BaseRunner.one_thread)

    def __init__(
        self,
        name: str,
        spec: IOSpec,
        config: PipelineConfig,
        weights: Path | None = None,
        *,
        device: str = "cpu",
        threads: int | None = None,
        module: nn.Module | None = None,
    ) -> None:
        super().__init__(name, spec)
        self.config = config
        self.weights = weights
        self.device = device
        self.threads = threads
        self._module = module
        self._given = module
        self._old_threads: int | None = None
        self._old_tf32: tuple[bool, bool] | None = None

    def _load(self) -> None:
        import torch

        from seqdeploy.models.build import build_model, step_module
        from seqdeploy.models.checkpoint import load_exported_weights

        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(
                f"backend '{self.name}' needs a CUDA device, and torch {torch.__version__} sees none; "
                "use backend 'torch' (CPU) or run on a GPU machine with a CUDA build of torch"
            )
        if self.threads is not None:
            self._old_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        if self.device == "cuda":
            # An fp32 backend must compute in fp32: cuDNN RNNs (and matmuls) may use TF32 on Ampere and
            # newer by default, which is ~1e-3 relative error, not fp32's 1e-7. Restored on unload.
            self._old_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        if self._given is None and self.config.model.is_python:
            self._module = self._user_module()
        elif self._given is None:
            model, _ = build_model(self.config, load_vectors=False)
            if self.weights is not None:
                # The bundle's own model.pt: exactly the exported names, never the user-checkpoint loader's
                # unwrapping, prefix stripping or structural mapping.
                load_exported_weights(model, self.weights, "the model built from the bundle's config")
            self._module = step_module(model) if self.spec.kind == "step" else model
        assert self._module is not None
        self._module = self._module.to(self.device).eval()

    def _user_module(self) -> nn.Module:
        from seqdeploy.errors import ConfigError, UsageError
        from seqdeploy.models.checkpoint import load_exported_weights
        from seqdeploy.models.user import build_user_model

        if self.spec.kind != "sequence":
            raise BackendUnavailable(f"backend '{self.name}': a source = 'python' model has only a sequence graph")
        try:
            model, info = build_user_model(self.config)
        except (ConfigError, UsageError) as exc:
            # Raised while rebuilding from a bundle, not while reading a config: say where the entry came
            # from and what to do when the module cannot be imported here.
            raise UsageError(
                f"backend '{self.name}': cannot rebuild your module from the bundle's manifest: {exc}. Without "
                "it, check the deployment with --no-import --expected FILE.npz (outputs of your own model)"
            ) from None
        if self.weights is not None:
            # Exactly the exported names (a child named `module` stays `module`): a module whose parameters
            # changed since export is refused, not remapped.
            load_exported_weights(model.net, self.weights, f"{info.resolved.text} as it is now")
        return model.eval()

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        assert self._module is not None
        # All inputs go to the model's device (the model moves lengths to the CPU where packing needs it).
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.spec.input_names]
        with torch.inference_mode():
            if self.device == "cuda":
                # CUDA events time the kernels alone; host wall time (which includes the copies and the
                # launch overhead) is measured by the caller.
                begin = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                begin.record()
                outs = self._module(*args)
                end.record()
                torch.cuda.synchronize()
                self._last_device_ms = float(begin.elapsed_time(end))
            else:
                outs = self._module(*args)
        return {n: t.detach().cpu().numpy() for n, t in zip(self.spec.output_names, outs, strict=True)}

    def _unload(self) -> None:
        import torch

        if self._old_threads is not None:
            torch.set_num_threads(self._old_threads)
            self._old_threads = None
        if self._old_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._old_tf32
            self._old_tf32 = None
        self._module = self._given
