"""``seqdeploy predict PKG``: run a package with the torch-free runtime and print a readable result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from seqdeploy.errors import UsageError


def _parse_ids(values: tuple[str, ...]) -> list[list[int]]:
    rows = []
    for v in values:
        try:
            row = [int(x) for x in v.replace(" ", "").split(",") if x]
        except ValueError:
            raise UsageError(f"--ids {v!r}: expected comma-separated integer token ids, e.g. --ids 3,17,5") from None
        if not row:
            raise UsageError(f"--ids {v!r}: expected at least one id")
        rows.append(row)
    return rows


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise UsageError(f"--inputs {path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--inputs {path}: not a readable .npz of arrays ({exc})") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _render(result: dict[str, Any], head: str, texts: tuple[str, ...], labels: tuple[str, ...] | None) -> list[str]:
    lines = []
    n = len(result["lengths"]) if "lengths" in result else next(iter(result.values())).shape[0]
    for i in range(n):
        what = f"{texts[i]!r}" if texts else f"row {i}"
        if head == "classify" and "labels" in result:
            probs = result["probabilities"][i]
            names = labels or tuple(str(k) for k in range(probs.size))
            best = int(probs.argmax())
            ranked = ", ".join(f"{names[k]} {probs[k]:.3f}" for k in np.argsort(-probs)[: min(5, probs.size)])
            lines.append(f"{what} -> {names[best]} (p={probs[best]:.3f}; {ranked})")
        elif head == "tag" and "labels" in result:
            toks = (
                result["tokens"][i]
                if "tokens" in result
                else [str(x) for x in result["ids"][i][: result["lengths"][i]]]
            )
            lines.append(
                f"{what}: " + " ".join(f"{t}/{tag}" for t, tag in zip(toks, result["labels"][i], strict=True))
            )
        else:
            lines.append(f"{what}:")
            for name, arr in result.items():
                if isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
                    row = arr[i]
                    if "lengths" in result and arr.ndim >= 2 and name == "output" and row.ndim >= 2:
                        row = row[: int(result["lengths"][i])]
                    lines.append(f"  {name}: shape {list(row.shape)}, L2 norm {float(np.linalg.norm(row)):.4g}")
    return lines


@click.command("predict")
@click.argument("package", metavar="PKG", type=click.Path(path_type=Path))
@click.option("--model", help="Model of the package [default: the stateless fp32 model].")
@click.option("--text", "texts", multiple=True, help="A text to run (repeat for a batch); needs a package vocabulary.")
@click.option("--ids", "ids", multiple=True, help="Comma-separated token ids of one sequence (repeat for a batch).")
@click.option(
    "--inputs",
    "inputs_npz",
    type=click.Path(path_type=Path, dir_okay=False),
    help=".npz of batch-first arrays keyed by input name.",
)
@click.option(
    "--backend",
    default="auto",
    show_default=True,
    help="auto (a packaged TensorRT engine for this GPU, else ORT CUDA, else CPU), trt, ort-cpu or ort-cuda.",
)
@click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def predict_cmd(
    package: Path,
    model: str | None,
    texts: tuple[str, ...],
    ids: tuple[str, ...],
    inputs_npz: Path | None,
    backend: str,
    threads: int | None,
    as_json: bool,
) -> None:
    """Run PKG (a package directory or .tar.gz) on --text, --ids or --inputs without torch.

    Prints the label and probabilities for classifiers, one tag per token for taggers, shapes and norms
    otherwise; --json prints everything. Every file of the package is checked against its sha256 first.
    Exit codes: 0 ok, 2 bad input or a package that fails its checks, 3 onnxruntime missing.
    """
    from seqdeploy.runtime import load

    given = sum(bool(x) for x in (texts, ids, inputs_npz))
    if given != 1:
        raise UsageError("give exactly one of --text, --ids or --inputs FILE.npz")
    predictor = load(package, model=model, backend=backend, threads=threads)
    sig = predictor.signature
    if texts:
        result = predictor.predict_text(list(texts))
    elif ids:
        result = predictor.predict_ids(_parse_ids(ids))
    else:
        assert inputs_npz is not None
        feeds = _load_npz(inputs_npz)
        raw = predictor.run(feeds) if set(feeds) == set(sig.spec.input_names) else None
        result = (
            dict(raw) if raw is not None else dict(predictor.predict(**_predict_args(feeds, sig.spec.input_names)))
        )
    if as_json:
        payload = {
            "model": sig.model,
            "backend": predictor.backend,
            "backend_notes": list(predictor.backend_notes),
            **_jsonable(result),
        }
        click.echo(json.dumps(payload))
        return
    click.echo(f"{sig.model} ({sig.kind}, {sig.precision}, {predictor.backend})")
    for line in _render(result, sig.head, texts, sig.labels):
        click.echo(line)


def _predict_args(feeds: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(feeds) - set(names))
    if unknown or "input" not in feeds:
        raise UsageError(f"--inputs: expected arrays named {list(names)} (at least 'input'), got {sorted(feeds)}")
    states = {k: v for k, v in feeds.items() if k not in ("input", "lengths")}
    return {"input": feeds["input"], "lengths": feeds.get("lengths"), "states": states or None}
