"""The package's ``README.md``: a model card generated from the package manifest and the proof."""

from __future__ import annotations

from typing import Any

from seqdeploy.parity.report import ParityReport

__all__ = ["render_card"]


def _dims(t: dict[str, Any]) -> str:
    return "[" + ", ".join(str(d) for d in t["dims"]) + "]"


def _triton_dims(t: dict[str, Any]) -> str:
    rest = [(-1 if isinstance(d, str) else d) for d in t["dims"][1:]]
    return "[1] → reshape []" if not rest else "[" + ", ".join(map(str, rest)) + "]"


def _example_ids(m: dict[str, Any], manifest: dict[str, Any]) -> list[int]:
    vocab = manifest["model"].get("vocab_size") or 2
    return [min(3, vocab - 1), min(17, vocab - 1), min(5, vocab - 1)]


def _python_feeds(entry: dict[str, Any], manifest: dict[str, Any], *, triton: bool) -> list[str]:
    """Lines of Python that build numpy feeds for the model's (data) inputs, batch 1, T 3."""
    lines = []
    for t in entry["inputs"]:
        name = t["name"]
        if triton and name not in entry["triton"]["inputs"]:
            continue
        if name == "input":
            if t["dtype"] == "int64":
                lines.append(f'feeds["input"] = np.array([{_example_ids(entry, manifest)}], dtype=np.int64)')
            else:
                lines.append(f'feeds["input"] = np.zeros((1, 3, {t["dims"][2]}), dtype=np.float32)')
        elif name == "lengths":
            lines.append(
                f'feeds["lengths"] = np.array([{"[3]" if triton else "3"}], dtype=np.int64)'
                + ("  # [B, 1] for Triton" if triton else "")
            )
        elif name == entry.get("control", {}).get("start"):
            lines.append(f'feeds["{name}"] = np.ones((1, 1), dtype=np.int32)')
        else:
            shape = ", ".join(str(d) for d in t["dims"][1:])
            lines.append(f'feeds["{name}"] = np.zeros((1, {shape}), dtype=np.float32)  # initial state')
    return lines


def render_card(manifest: dict[str, Any], report: ParityReport) -> str:
    """Markdown model card: what the model is, its I/O, how to call it, and how it was proven."""
    name = manifest["name"]
    info = manifest["model"]
    models: dict[str, Any] = manifest["models"]
    default = models[manifest["default_model"]]
    what = (
        _describe(info)
        + ", "
        + (
            f"token ids (vocabulary {info['vocab_size']})"
            if info["vocab_size"]
            else f"{info['feature_size']} features"
        )
        + f" in, head `{info['head']}`"
        + (f" ({info['num_classes']} classes)" if info.get("num_classes") else "")
    )
    src = manifest["source"]
    out = [
        f"# {name}",
        "",
        f"A seqdeploy package (generated; do not edit: every file's sha256 is in `seqdeploy.json`). Model: {what}. "
        f"Made {manifest['created_utc']} by seqdeploy {manifest['seqdeploy_version']} "
        f"from the export `{src['bundle']}` "
        f"(manifest sha256 `{str(src['manifest_sha256'])[:16]}…`).",
        "",
        "This directory **is a Triton model repository** (`tritonserver --model-repository=$PWD`) and loads in "
        "Python with `seqdeploy.runtime` (no torch). Every graph is batch-first on every input and output.",
        "",
        "## Models",
        "",
        "| model | kind | precision | Triton scheduler | max batch | T range | proven |",
        "|---|---|---|---|---|---|---|",
    ]
    for mname, m in models.items():
        p = m["parity"]
        out.append(
            f"| `{mname}` | {m['kind']} | {m['precision']} | {m['scheduler']} | {m['max_batch_size']} | "
            f"{m['ranges']['seq'][0]}–{m['ranges']['seq'][1]} | {p['comparisons']} comparisons vs PyTorch |"
        )
    if manifest["stream"]["model"] is None:
        out += ["", f"No stream model: {manifest['stream']['reason']}."]
    trt = (manifest.get("trt") or {}).get("models") or {}
    if trt:
        out += [
            "",
            "## TensorRT engines",
            "",
            "Built and proven by `seqdeploy compile` on the GPU named (not re-run by `seqdeploy package`). They keep "
            "the export's layout, so their Triton models have `max_batch_size: 0` (full shapes, no Triton "
            "batching); each loads only on its compute capability with exactly its TensorRT version.",
            "",
            "| model | computes | precision | compute capability → plan | TensorRT | batch / T covered |",
            "|---|---|---|---|---|---|",
        ]
        for mname, m in trt.items():
            plans = ", ".join(f"{e['compute_capability']} → `{e['file'].rsplit('/', 1)[-1]}`" for e in m["engines"])
            versions = ", ".join(sorted({str(e.get("tensorrt")) for e in m["engines"]}))
            r = m["ranges"]
            out.append(
                f"| `{mname}` | `{m['for_model']}` | {m['precision']} | {plans} | {versions} | "
                f"{r['batch'][0]}–{r['batch'][1]} / {r['seq'][0]}–{r['seq'][1]} |"
            )
    out += [
        "",
        f"## Signature of `{manifest['default_model']}`",
        "",
        "| tensor | dtype | dims | axes | Triton `dims` |",
        "|---|---|---|---|---|",
    ]
    for side in ("inputs", "outputs"):
        for t in default[side]:
            arrow = "in" if side == "inputs" else "out"
            out.append(
                f"| {arrow} `{t['name']}` | {t['dtype']} | {_dims(t)} | {', '.join(t['axes'])} | {_triton_dims(t)} |"
            )
    if default["state"]:
        pairs = ", ".join(f"`{p['input']}` → `{p['output']}`" for p in default["state"])
        out += ["", f"State pairs: {pairs}. Pass zeros to start a sequence; feed an output state back to continue it."]
    text = manifest.get("text")
    if text:
        out += [
            "",
            f"Text: tokens are `re.findall({text['pattern']!r}, text{'.lower()' if text['lowercase'] else ''})`, "
            "looked up "
            f"in `vocab.txt` (line k = id k); unknown words "
            + (f"map to `{text['unk_token']}` (id {text['unk_id']})" if text["oov"] == "unk" else "are refused")
            + f"; padding id {text['pad_id']}.",
        ]
    elif manifest.get("text_unavailable"):
        out += ["", f"No vocabulary: {manifest['text_unavailable']}."]
    if manifest.get("labels"):
        out += ["", "Labels: " + ", ".join(f"{k} = `{v}`" for k, v in enumerate(manifest["labels"])) + "."]

    out += [
        "",
        "## Call it",
        "",
        "### Python, without torch",
        "",
        "```bash",
        'pip install "seqdeploy[cpu]"',
        "```",
        "",
        "```python",
    ]
    out += [
        "import numpy as np",
        "from seqdeploy import runtime",
        "",
        f'p = runtime.load("{name}")   # or "{name}.tar.gz"',
    ]
    if text:
        out.append('print(p.predict_text(["a fine example"]))')
    if default["inputs"][0]["dtype"] == "int64":
        out.append(
            f"out = p.predict(np.array([{_example_ids(default, manifest)}], dtype=np.int64))  # zero state, full rows"
        )
    else:
        out.append(f"out = p.predict(np.zeros((1, 3, {default['inputs'][0]['dims'][2]}), dtype=np.float32))")
    out.append("print({k: v.shape for k, v in out.items()})")
    stream = manifest["stream"]["model"]
    if stream:
        out += [
            "s = p.stream(batch=1)            # carries h_n/c_n from chunk to chunk",
            "s.feed(chunk1); s.feed(chunk2)",
        ]
    out += [
        "```",
        "",
        "### Triton (`tritonclient`)",
        "",
        "```bash",
        f"tritonserver --model-repository=$PWD/{name}",
        "```",
        "",
        "```python",
    ]
    out += [
        "import numpy as np",
        "import tritonclient.http as httpclient",
        "",
        'client = httpclient.InferenceServerClient("localhost:8000")',
        "feeds = {}",
    ]
    out += _python_feeds(default, manifest, triton=True)
    out += [
        "inputs = []",
        "for k, v in feeds.items():",
        '    dtype = {"int64": "INT64", "float32": "FP32"}[str(v.dtype)]',
        "    inputs.append(httpclient.InferInput(k, list(v.shape), dtype))",
        "    inputs[-1].set_data_from_numpy(v)",
        f'result = client.infer("{manifest["default_model"]}", inputs)',
        'print(result.as_numpy("output"))',
        "```",
    ]
    if stream:
        out += [
            "",
            f"Streaming: send chunks to `{stream}` with `sequence_id=…, sequence_start=True` on the first chunk of a "
            "sequence (`sequence_end=True` on the last); Triton keeps the states (`"
            + "`, `".join(p["input"] for p in models[stream]["state"])
            + "`) between requests and the graph resets them on START. Send only "
            + ", ".join(f"`{n}`" for n in models[stream]["triton"]["inputs"])
            + ".",
        ]
    out += [
        "",
        "### curl (KServe v2 JSON)",
        "",
        "```bash",
        f"python3 - <<'EOF' | curl -s -X POST localhost:8000/v2/models/{manifest['default_model']}/infer -d @-",
        "import json",
        "inputs = []",
    ]
    ids = _example_ids(default, manifest)
    out += [f"inputs.append({_json_input(t, ids)})" for t in default["inputs"]]
    out += ['print(json.dumps({"inputs": inputs}))', "EOF"]
    out += ["```", "", "## Parity with PyTorch (proven before this package was written)", ""]
    out += [
        "| model | mode | comparisons | "
        + " | ".join(f"max\\|Δ\\| {n}" for n in _tensors(models))
        + " | tolerance (atol, rtol) |"
    ]
    out += ["|---|---|---|" + "---|" * len(_tensors(models)) + "---|"]
    for mname, m in models.items():
        p = m["parity"]
        cells = " | ".join(f"{p['max_abs'][n]:.2e}" if n in p["max_abs"] else "—" for n in _tensors(models))
        out.append(
            f"| `{mname}` | {p['mode']} | {p['comparisons']} | {cells} | "
            f"{p['tolerance']['atol']:g}, {p['tolerance']['rtol']:g} |"
        )
    out += [
        "",
        f"Reference: the export's PyTorch model (fp32); graphs run in ONNX Runtime CPU. Summary: {report.summary()}.",
    ]
    latency = manifest.get("latency")
    if latency:
        out += [
            "",
            "## Latency (`seqdeploy profile` of the source export)",
            "",
            "| backend | mode | batch | seq | p50 ms | p99 ms |",
            "|---|---|---|---|---|---|",
        ]
        out += [
            f"| {c['backend']} | {c['mode']} | {c['batch']} | {c['seq']} | {c['p50_ms']:.3f} | {c['p99_ms']:.3f} |"
            for c in latency["cases"]
        ]
        if latency.get("env"):
            out += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in latency["env"].items()) + "."]
    return "\n".join(out) + "\n"


def _json_input(t: dict[str, Any], ids: list[int]) -> str:
    """A Python expression for one input of a KServe v2 JSON request (batch 1, T 3)."""
    name = t["name"]
    if name == "lengths":
        return '{"name": "lengths", "shape": [1, 1], "datatype": "INT64", "data": [3]}'
    if name == "input" and t["dtype"] == "int64":
        return f'{{"name": "input", "shape": [1, 3], "datatype": "INT64", "data": {ids}}}'
    dims = [3 if d == "seq" else d for d in t["dims"][1:]]
    n = 1
    for d in dims:
        n *= int(d)
    shape = ", ".join(str(d) for d in [1, *dims])
    return f'{{"name": "{name}", "shape": [{shape}], "datatype": "FP32", "data": [0.0] * {n}}}'


def _describe(info: dict[str, Any]) -> str:
    s = info.get("summary") or {}
    if info.get("source") == "python":
        layers = ", ".join(s.get("recurrent") or []) or "no recurrent layer found"
        return f"your module {s.get('class') or s.get('entry')} ({layers})"
    hidden = "×".join(str(h) for h in s.get("hidden", []))
    return f"{'bidirectional ' if info['bidirectional'] else ''}{s.get('cell')} (hidden {hidden})"


def _tensors(models: dict[str, Any]) -> list[str]:
    names: dict[str, None] = {}
    for m in models.values():
        for n in m["parity"]["max_abs"]:
            names.setdefault(n, None)
    return list(names)
