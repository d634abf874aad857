"""Checkpoints that load as trained: read safely, unwrap, map names by structure, refuse what would be wrong.

A user's checkpoint is rarely keyed like the model seqdeploy builds: it is a training checkpoint
(``{"epoch": 3, "model_state_dict": ...}``), was saved through ``nn.DataParallel`` (``module.`` prefixes),
or comes from a tutorial module whose attributes are ``lstm``/``rnn``/``fc``/``cell_1``… where the zoo model
has ``core.rnn``/``head``/``core.cells.0``. This module

1. reads the file with ``torch.load(weights_only=True)`` — never unpickling code, and never repeating
   torch's advice to turn that off;
2. unwraps ``state_dict``/``model_state_dict``/``model``/``net`` and strips ``module.``/``_orig_mod.``;
3. refuses tensors that cannot be weights of a real-valued model: meta (no data), complex (the imaginary
   part would be dropped), sparse or quantized, NaN/Inf;
4. maps the keys: ``[checkpoint] map`` when given; otherwise, when the names differ, by structure —
   tensors are grouped by their module prefix, a group's signature is its parameter suffixes and shapes
   (``weight_ih_l0 [80, 20]`` …), and groups of equal signature pair up in order of appearance
   (``cell_1``, ``cell_2`` → ``core.cells.0``, ``.1``). The mapping is used only when every tensor on both
   sides is paired, and is reported; anything else is refused with the proposal and what is left over.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from seqdeploy.errors import CheckpointError

__all__ = [
    "WRAPPER_KEYS",
    "CheckpointLoad",
    "fit_state_dict",
    "load_checkpoint",
    "load_exported_weights",
    "read_state_dict",
]

WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model", "net")
"""Keys under which training checkpoints keep the model's state_dict."""
_PREFIXES = ("module.", "_orig_mod.")  # nn.DataParallel/DistributedDataParallel, torch.compile
_SAVE_HINT = "Save the weights as a plain state_dict where the model is defined: torch.save(model.state_dict(), path)"

Shape = tuple[int, ...]


@dataclass(frozen=True)
class CheckpointLoad:
    """How a checkpoint was loaded (printed by ``export`` and stored in the manifest's ``checkpoint_load``).

    Attributes:
        path: The file.
        unwrapped: The wrapper keys followed (``["model_state_dict"]``), empty for a plain state_dict.
        stripped_prefix: ``"module."`` when DataParallel prefixes were removed.
        mapping: Renames applied, ``{"lstm.": "core.rnn."}`` (prefixes end in ``.``; identity left out).
        mapping_source: ``exact`` (names matched), ``config`` (``[checkpoint] map``) or ``structure``.
        tensors: Number of tensors loaded.
    """

    path: str
    unwrapped: tuple[str, ...] = ()
    stripped_prefix: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    mapping_source: Literal["exact", "config", "structure"] = "exact"
    tensors: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path,
            "unwrapped": list(self.unwrapped),
            "stripped_prefix": self.stripped_prefix,
            "mapping": dict(self.mapping),
            "mapping_source": self.mapping_source,
            "tensors": self.tensors,
        }

    def describe(self) -> list[str]:
        """Lines for the terminal: what was unwrapped, stripped and renamed."""
        lines = []
        if self.unwrapped:
            lines.append(f"checkpoint: took the state_dict under {' -> '.join(repr(k) for k in self.unwrapped)}")
        if self.stripped_prefix:
            lines.append(f"checkpoint: stripped the '{self.stripped_prefix}' prefix (DataParallel / compile)")
        if self.mapping:
            how = {
                "structure": "mapped by structure (parameter names, shapes, order of appearance)",
                "config": "mapped by [checkpoint] map",
                "exact": "mapped",
            }[self.mapping_source]
            renames = ", ".join(f"'{a}' -> '{b}'" for a, b in self.mapping.items())
            lines.append(f"checkpoint: {how}: {renames}")
            if self.mapping_source == "structure":
                lines.append("checkpoint: set [checkpoint] map in the config to choose another mapping")
        return lines


# ------------------------------------------------------------------------------------------------ reading


def _clean_torch_error(exc: BaseException) -> str:
    """Torch's message without its advice to load with ``weights_only=False`` (never ours to give)."""
    text = str(exc)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        return (
            f"it holds a pickled Python object of type {m.group(1)} (a whole model or object saved with "
            "torch.save(obj)?), which seqdeploy never unpickles"
        )
    kept = []
    for line in text.splitlines():
        for sentence in re.split(r"(?<=[.!?])\s+", line):
            low = sentence.lower()
            if any(w in low for w in ("weights_only", "safe_globals", "trust", "arbitrary code")):
                continue
            if sentence.strip():
                kept.append(sentence.strip())
    detail = " ".join(kept)[:300] or type(exc).__name__
    return f"{type(exc).__name__}: {detail}"


def read_state_dict(
    path: str | Path, own: Mapping[str, Shape] | None = None
) -> tuple[dict[str, torch.Tensor], tuple[str, ...], str | None]:
    """Read a user's checkpoint into a plain ``{name: tensor}``.

    Args:
        path: The file.
        own: The model's ``{key: shape}``: a ``module.``/``_orig_mod.`` prefix is stripped only when the
            model's own keys do not carry it (a module with a child named ``module`` keeps its names).

    Returns:
        ``(state, wrapper keys followed, stripped prefix)``.

    Raises:
        CheckpointError: Missing, unreadable, holding pickled objects, not a state_dict, or holding tensors
            that are not real weights (meta, complex, sparse, quantized, NaN/Inf).
    """
    path = Path(path)
    state, unwrapped = _unwrap(path, _torch_load(path))
    state, stripped = _strip_prefix(state, own)
    _check_tensors(path, state)
    return state, unwrapped, stripped


def _torch_load(path: Path) -> object:
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; expected a checkpoint file saved with torch.save")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except PermissionError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise CheckpointError(
            f"{path}: cannot be read as a weights-only state_dict ({_clean_torch_error(exc)}). {_SAVE_HINT}; "
            "seqdeploy never unpickles arbitrary objects."
        ) from None


def load_exported_weights(model: nn.Module, path: str | Path, what: str) -> None:
    """Load a bundle's own ``model.pt`` into ``model``: exactly the exported names, strictly.

    A bundle's weights were saved by seqdeploy from the very module being rebuilt, so nothing is unwrapped,
    stripped or mapped (a user's module whose child is named ``module`` keeps that name), and a module
    whose parameters changed since export is refused instead of remapped.

    Raises:
        CheckpointError: The file cannot be read safely, is not a plain state_dict, or does not fit ``model``
            (the message names ``what`` and the keys).
    """
    path = Path(path)
    obj = _torch_load(path)
    if not _is_state_dict(obj):
        raise CheckpointError(f"{path}: expected the state_dict seqdeploy exported, got {type(obj).__name__}")
    assert isinstance(obj, dict)
    try:
        model.load_state_dict(obj, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: the exported weights do not fit {what} (was it changed since export?): "
            f"{' '.join(str(exc).split())[:600]}"
        ) from None


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(path: Path, obj: object) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    followed: list[str] = []
    for _ in range(3):  # {"model": {"state_dict": ...}} at most
        if _is_state_dict(obj):
            assert isinstance(obj, dict)
            return {str(k): v for k, v in obj.items()}, tuple(followed)
        if not isinstance(obj, dict):
            break
        found = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)]
        if len(found) > 1 and any(not _same(obj[found[0]], obj[k]) for k in found[1:]):
            raise CheckpointError(
                f"{path}: holds several different state_dicts ({', '.join(repr(k) for k in found)}); seqdeploy "
                f"cannot tell which is the model. {_SAVE_HINT}"
            )
        if not found:
            tensors = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
            others = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
            if tensors and others:
                raise CheckpointError(
                    f"{path}: mixes tensors with other values ({', '.join(map(str, others[:8]))}); expected a "
                    f"state_dict (only tensors). {_SAVE_HINT}"
                )
            raise CheckpointError(
                f"{path}: expected a state_dict (a dict of tensors) or a training checkpoint holding one under "
                f"{', '.join(repr(k) for k in WRAPPER_KEYS)}; got a dict with keys "
                f"{[str(k) for k in list(obj)[:10]]}. {_SAVE_HINT}"
            )
        followed.append(found[0])
        obj = obj[found[0]]
    raise CheckpointError(f"{path}: expected a state_dict (a dict of tensors), got {type(obj).__name__}. {_SAVE_HINT}")


def _same(a: object, b: object) -> bool:
    if not (isinstance(a, dict) and isinstance(b, dict)) or a.keys() != b.keys():
        return False
    return all(
        isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape and bool((x == y).all())
        for x, y in ((a[k], b[k]) for k in a)
    )


def _strip_prefix(
    state: dict[str, torch.Tensor], own: Mapping[str, Shape] | None = None
) -> tuple[dict[str, torch.Tensor], str | None]:
    """Strip ``module.``/``_orig_mod.`` while every key has it — unless the keys already are the model's,
    or the model's own keys carry that prefix too (then stripping would break names that are right) and
    stripping does not make them the model's (DataParallel around a module with a child ``module``).
    """
    stripped = None
    own_keys = set(own) if own is not None else None
    changed = True
    while changed and state and set(state) != own_keys:
        changed = False
        for prefix in _PREFIXES:
            if not all(k.startswith(prefix) for k in state):
                continue
            candidate = {k[len(prefix) :]: v for k, v in state.items()}
            own_has_it = own_keys is not None and bool(own_keys) and all(k.startswith(prefix) for k in own_keys)
            if own_has_it and set(candidate) != own_keys:
                continue
            state = candidate
            stripped = prefix if stripped is None else stripped
            changed = True
            break
    return state, stripped


def _check_tensors(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    problems = []
    for k, v in state.items():
        if v.is_meta:
            problems.append(f"{k}: a meta tensor (shape only, no data: saved from a model built on the meta device)")
        elif v.is_complex():
            problems.append(f"{k}: complex ({v.dtype}); weights are real and the imaginary part would be lost")
        elif v.layout != torch.strided:
            problems.append(f"{k}: a {v.layout} tensor; save dense weights (tensor.to_dense())")
        elif v.is_quantized:
            problems.append(f"{k}: quantized ({v.dtype}); save the float weights (seqdeploy quantizes itself)")
    if problems:
        raise CheckpointError(
            f"{path}: holds tensors that cannot be a model's weights:\n  "
            + "\n  ".join(problems[:20])
            + f"\n{_SAVE_HINT}"
        )
    nonfinite = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if nonfinite:
        raise CheckpointError(f"{path}: tensors with NaN/Inf values: {', '.join(nonfinite)}")


# ------------------------------------------------------------------------------------------------ mapping


def _split(key: str) -> tuple[str, str]:
    prefix, _, suffix = key.rpartition(".")
    return prefix, suffix


def _groups(shapes: Mapping[str, Shape]) -> dict[str, dict[str, Shape]]:
    """``{module prefix: {parameter suffix: shape}}`` in order of first appearance."""
    out: dict[str, dict[str, Shape]] = {}
    for key, shape in shapes.items():
        prefix, suffix = _split(key)
        out.setdefault(prefix, {})[suffix] = shape
    return out


def _signature(group: Mapping[str, Shape]) -> tuple[tuple[str, Shape], ...]:
    return tuple(sorted(group.items()))


def _trailing_number(prefix: str) -> int | None:
    m = re.search(r"(\d+)$", prefix)
    return int(m.group(1)) if m else None


def _fmt_prefix(prefix: str) -> str:
    return f"{prefix}." if prefix else ""


def _fmt_group(prefix: str, group: Mapping[str, Shape]) -> str:
    return ", ".join(f"{_fmt_prefix(prefix)}{s} {list(shape)}" for s, shape in group.items())


@dataclass
class _Proposal:
    pairs: dict[str, str]  # checkpoint prefix -> model prefix
    left_checkpoint: list[str]
    left_model: list[str]
    ambiguous: list[str]

    @property
    def complete(self) -> bool:
        return not (self.left_checkpoint or self.left_model or self.ambiguous)


def _index_part(prefix: str) -> tuple[str, int] | None:
    """``(name with its last all-digit dotted part replaced by ``#``, that number)``.

    ``layers.1.rnn`` → ``("layers.#.rnn", 1)`` (a ``ModuleList``/``Sequential`` index); None without such a part.
    """
    parts = prefix.split(".")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].isdigit() and parts[i].isascii():
            return ".".join([*parts[:i], "#", *parts[i + 1 :]]), int(parts[i])
    return None


def _rising(numbers: list[int]) -> bool:
    return len(set(numbers)) == len(numbers) and numbers == sorted(numbers)


def _numbered_in_order(prefixes: list[str]) -> bool:
    """Whether the prefixes are numbered and the numbers are distinct and rise in the given order.

    Numbered: every prefix ends in a number (``cell_1``, ``cell_2``), or every prefix has an all-digit dotted
    part and the names differ only in their last such part (``layers.0.rnn``, ``layers.1.rnn``: the number is
    the index in a ``ModuleList``). ``layers.0.rnn`` with ``extra.rnn``, or ``a.0.rnn`` with ``b.1.rnn``, are not.
    """
    numbers = [_trailing_number(p) for p in prefixes]
    if all(n is not None for n in numbers) and _rising([n for n in numbers if n is not None]):
        return True
    indexed = [_index_part(p) for p in prefixes]
    if any(x is None for x in indexed):
        return False
    parts = [x for x in indexed if x is not None]
    return len({rest for rest, _ in parts}) == 1 and _rising([n for _, n in parts])


def _propose(src: Mapping[str, Shape], dst: Mapping[str, Shape]) -> _Proposal:
    """Pair checkpoint groups with model groups of the same signature.

    Per signature: groups with the same name on both sides pair first (a name that is already the model's
    is never sent elsewhere); a single group left on each side pairs; several left pair in order only when
    every one of them, in the checkpoint and in the model, is numbered and the numbers rise in the order of
    appearance on both sides (``cell_1``, ``cell_2`` → ``core.cells.0``, ``.1``; ``layers.0.rnn``,
    ``layers.1.rnn`` likewise: see :func:`_numbered_in_order`). Anything else — names without numbers
    (``top``, ``bottom``), partly numbered (``cell``, ``cell_2``; ``layers.0.rnn``, ``extra.rnn``), numbering
    against the file order (``blocks.1.rnn``, ``blocks.0.rnn``) — is ambiguous: the order of registration
    says nothing about the order a forward applies them. The proposal still pairs them in file order, to show
    the user what to write in ``[checkpoint] map``.
    """
    sgroups, dgroups = _groups(src), _groups(dst)
    by_sig_s: dict[tuple[tuple[str, Shape], ...], list[str]] = {}
    by_sig_d: dict[tuple[tuple[str, Shape], ...], list[str]] = {}
    for p, g in sgroups.items():
        by_sig_s.setdefault(_signature(g), []).append(p)
    for p, g in dgroups.items():
        by_sig_d.setdefault(_signature(g), []).append(p)
    prop = _Proposal({}, [], [], [])
    for sig, all_sps in by_sig_s.items():
        all_dps = by_sig_d.get(sig, [])
        same = [p for p in all_sps if p in all_dps]
        for p in same:
            prop.pairs[p] = p
        sps = [p for p in all_sps if p not in same]
        dps = [p for p in all_dps if p not in same]
        n = min(len(sps), len(dps))
        if n and max(len(sps), len(dps)) > 1 and not (_numbered_in_order(sps) and _numbered_in_order(dps)):
            model_side = f" (model: {', '.join(dps)})" if len(dps) > 1 else ""
            prop.ambiguous.append(
                f"{', '.join(sps)} have the same structure{model_side}, and their names do not say which is "
                "which (pairing in order needs every one numbered, in rising order on both sides); name the "
                "pairs in [checkpoint] map"
            )
        for s, d in zip(sps[:n], dps[:n], strict=True):
            prop.pairs[s] = d
        prop.left_checkpoint.extend(_fmt_group(p, sgroups[p]) for p in sps[n:])
        prop.left_model.extend(_fmt_group(p, dgroups[p]) for p in dps[n:])
    for s, d in prop.pairs.items():
        if s != d and s in dgroups:
            # `fc` in both, but with other shapes: pairing the checkpoint's `fc` with another layer of its shape
            # would load it where its name says it does not belong.
            prop.ambiguous.append(
                f"'{s}' is a layer of the model too, with other shapes ({_fmt_group(s, dgroups[s])}), yet by "
                f"shape it would load into '{d}'; check that [model] matches the trained model, or name the pairs "
                "in [checkpoint] map"
            )
    for sig, dps in by_sig_d.items():
        if sig not in by_sig_s:
            prop.left_model.extend(_fmt_group(p, dgroups[p]) for p in dps)
    return prop


def _apply_prefix_map(keys: list[str], mapping: Mapping[str, str]) -> tuple[dict[str, str], set[str]]:
    """``({old key: new key}, entries used)``: the longest matching ``[checkpoint] map`` entry renames each key."""
    out = {}
    used: set[str] = set()
    prefixes = sorted((k for k in mapping if k.endswith(".")), key=len, reverse=True)
    for key in keys:
        if key in mapping:
            out[key] = mapping[key]
            used.add(key)
            continue
        for p in prefixes:
            if key.startswith(p):
                out[key] = mapping[p] + key[len(p) :]
                used.add(p)
                break
        else:
            out[key] = key
    return out, used


def _mismatch_lines(state: Mapping[str, Shape], own: Mapping[str, Shape]) -> list[str]:
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: checkpoint {tuple(state[k])} vs model {tuple(own[k])}"
        for k in sorted(set(own) & set(state))
        if state[k] != own[k]
    ]
    lines = []
    if missing:
        lines.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        lines.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    if wrong:
        lines.append(f"shape mismatches ({len(wrong)}): {'; '.join(wrong)}")
    return lines


def _proposal_lines(prop: _Proposal) -> list[str]:
    lines = []
    renames = {a: b for a, b in prop.pairs.items() if a != b}
    if renames:
        lines.append(
            "proposed mapping by structure (parameter names, shapes, order): "
            + ", ".join(f"'{_fmt_prefix(a)}' -> '{_fmt_prefix(b)}'" for a, b in renames.items())
        )
    if prop.left_checkpoint:
        lines.append(
            "left over in the checkpoint (nothing in the model has their structure): "
            + "; ".join(prop.left_checkpoint)
        )
    if prop.left_model:
        lines.append(
            "left over in the model (nothing in the checkpoint has their structure): " + "; ".join(prop.left_model)
        )
    lines.extend(f"ambiguous: {a}" for a in prop.ambiguous)
    return lines


def fit_state_dict(
    path: Path,
    state: dict[str, torch.Tensor],
    own: Mapping[str, Shape],
    key_map: Mapping[str, str] | None = None,
    *,
    what: str = "the model built from the config",
) -> tuple[dict[str, torch.Tensor], dict[str, str], Literal["exact", "config", "structure"]]:
    """Rename ``state``'s keys to ``own``'s (the model's ``{key: shape}``).

    Returns:
        ``(renamed state, prefix renames, how)``.

    Raises:
        CheckpointError: No complete mapping: the message lists missing/unexpected keys, the proposal by
            structure and what is left over.
    """
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if key_map:
        renamed, used = _apply_prefix_map(list(state), key_map)
        unused = [k for k in key_map if k not in used]
        if unused:
            # A typo ('lstm' for 'lstm.') or an entry for another checkpoint: reported as applied, it would
            # hide that the names it was meant to fix were mapped some other way.
            raise CheckpointError(
                f"{path}: [checkpoint] map entries {unused} match no tensor of the checkpoint (a key ending in '.' "
                f"renames that prefix, any other key one exact name); the checkpoint's prefixes are "
                f"{sorted({_fmt_prefix(_split(k)[0]) for k in state} - {''})[:20]}"
            )
        if len(set(renamed.values())) != len(renamed):
            raise CheckpointError(f"{path}: [checkpoint] map sends two tensors to the same name")
        mapped = {renamed[k]: v for k, v in state.items()}
        mapped_shapes = {k: tuple(v.shape) for k, v in mapped.items()}
        if set(mapped_shapes) == set(own) and all(mapped_shapes[k] == own[k] for k in own):
            return mapped, dict(key_map), "config"
        lines = _mismatch_lines(mapped_shapes, own)
        prop = _propose(shapes, own)
        raise CheckpointError(
            f"{path}: after [checkpoint] map it still does not fit {what}:\n  "
            + "\n  ".join(lines + _proposal_lines(prop))
            + "\nFix [checkpoint] map (a key ending in '.' renames that prefix)."
        )
    if set(shapes) == set(own):
        lines = _mismatch_lines(shapes, own)
        if lines:
            raise CheckpointError(
                f"{path}: does not fit {what}:\n  " + "\n  ".join(lines) + "\nCheck that [model] matches the "
                "model the checkpoint was trained with."
            )
        return state, {}, "exact"
    prop = _propose(shapes, own)
    if prop.complete:
        rename = {}
        for key in state:
            prefix, suffix = _split(key)
            new_prefix = prop.pairs[prefix]
            rename[key] = f"{_fmt_prefix(new_prefix)}{suffix}"
        mapped = {rename[k]: v for k, v in state.items()}
        renames = {_fmt_prefix(a): _fmt_prefix(b) for a, b in prop.pairs.items() if a != b}
        return mapped, renames, "structure"
    raise CheckpointError(
        f"{path}: does not fit {what}, and no unique mapping by structure was found:\n  "
        + "\n  ".join(_mismatch_lines(shapes, own) + _proposal_lines(prop))
        + "\nCheck that [model] matches the model the checkpoint was trained with, or name the renames in "
        '[checkpoint] map = { "old." = "new." }.'
    )


def load_checkpoint(
    model: nn.Module,
    path: str | Path,
    *,
    key_map: Mapping[str, str] | None = None,
    what: str = "the model built from the config",
) -> CheckpointLoad:
    """Load a checkpoint into ``model`` (see the module docstring for what is accepted and refused).

    Raises:
        CheckpointError: The file cannot be read safely, holds no usable state_dict, or does not fit.
    """
    path = Path(path)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state, unwrapped, stripped = read_state_dict(path, own)
    mapped, renames, how = fit_state_dict(path, state, own, key_map, what=what)
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:  # a dtype torch cannot copy (e.g. bool into float)
        raise CheckpointError(f"{path}: cannot be loaded into {what}: {str(exc).splitlines()[0]}") from None
    model.eval()
    return CheckpointLoad(str(path), unwrapped, stripped, renames, how, len(mapped))
