"""Fetch and repair the TensorRT type stubs so mypy checks every TensorRT call without TensorRT.

TensorRT cannot be installed on machines that cannot reach NVIDIA's package index (its libraries are
downloaded at install time), so the TensorRT-facing code is type-checked against `tensorrt-stubs`
(stubs for TensorRT 10.13's Python API, generated from the bindings). As published they do not work
(measured, ../shared/docs/tensorrt-notes.md "Type-checking against TensorRT without TensorRT"):

1. the wheel's metadata requires `tensorrt` itself      -> download it with --no-deps, never install it;
2. the `tensorrt` folder has no py.typed                  -> copy the stubs into `typings/` (mypy_path);
3. syntax errors: parameters named `in`, and a parameter without a default after defaulted ones
   (`add_scale_nd(..., power: Weights = None, channel_axis: int)`) -> rename to `in_`, add `= ...`;
4. `import tensorrt_libs` (a runtime package), and a module-level `bool: DataType` (TensorRT's
   `trt.bool`) that shadows the builtin in every `-> bool` annotation, so return types become invalid
   and calls go unchecked               -> drop the import; annotations use `builtins.bool`.

Idempotent: a stamp records the stub version; `typings/` is git-ignored. Run by scripts/check.
Usage: python scripts/typings.py [--dest typings]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

STUBS = "tensorrt-stubs==10.13.0.35.1"
PACKAGES = ("tensorrt", "tensorrt_bindings")
_BOOL = re.compile(r"(?<![\w.])bool(?!\w)")
_IN_PARAM = re.compile(r"(?<=[(,] )in(?=: )|(?<=\()in(?=: )")


def repair(text: str, *, module: str) -> str:
    """The repaired text of one `.pyi` file."""
    lines = []
    for line in text.splitlines():
        if module == "tensorrt" and re.match(r"\s*import tensorrt_libs\b", line):
            continue  # a runtime-only package; nothing in the API is typed by it
        if line.startswith("bool:"):
            lines.append(line)  # trt.bool (DataType.BOOL) itself stays
            continue
        if line.lstrip().startswith("def "):
            line = _IN_PARAM.sub("in_", line)
            line = line.replace(
                "power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = ...)"
            )
        lines.append(_BOOL.sub("_b.bool", line))
    out = "\n".join(lines) + "\n"
    head = "from __future__ import annotations\n"
    body = out[len(head) :] if out.startswith(head) else out
    return head + "import builtins as _b\n" + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parent.parent / "typings")
    args = parser.parse_args()
    dest: Path = args.dest
    stamp = dest / ".stamp"
    if stamp.is_file() and stamp.read_text().strip() == STUBS:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", STUBS, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("tensorrt_stubs-*.whl"))
        shutil.rmtree(dest, ignore_errors=True)
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                top = name.split("/")[0]
                if top in PACKAGES and name.endswith(".pyi"):
                    target = dest / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(repair(zf.read(name).decode("utf-8"), module=top), encoding="utf-8")
    stamp.write_text(STUBS + "\n")
    print(f"typings: {STUBS} repaired into {dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
