"""``seqdeploy package --check PKG``: re-run every check of a package without torch.

Checks, in order (the first two gate the rest: nothing is parsed from a package that fails them):

1. ``manifest`` — ``seqdeploy.json`` reads, has this schema version and its own digest matches;
2. ``files`` — every file's sha256, nothing unlisted, no links;
3. per model, ``<model>/config.pbtxt`` — parses with Triton's ``ModelConfig`` protobuf and passes
   :func:`~seqdeploy.package.triton.check_model_config` against its graph;
4. per model, ``<model> signature`` — the manifest's signature (what the runtime trusts) equals the
   graph's I/O: names, dtypes, dims;
5. per TensorRT model (``NAME_trt``), its ``config.pbtxt`` — parses with Triton's protobuf and agrees with
   the recorded engines (:func:`~seqdeploy.package.engines.check_trt_config`: names, dtypes, full dims,
   ``max_batch_size: 0``, ``cc_model_filenames`` vs the recorded compute capabilities and plan sha256s,
   the profiles vs the recorded ranges); the engines themselves need TensorRT to open;
6. ``repository`` — every directory at the top of the package is a model the manifest lists (Triton
   loads every directory of a repository as a model);
7. ``vocabulary`` — the vocabulary has ``vocab_size`` distinct tokens.

Needs ``seqdeploy[cpu]`` (onnxruntime reads the graphs' I/O) and ``tritonclient`` (extra ``triton``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqdeploy._lazy import require
from seqdeploy.errors import BackendUnavailable, SeqdeployError
from seqdeploy.package.engines import check_trt_config
from seqdeploy.package.manifest import PACKAGE_MANIFEST, ModelEntry, read_manifest, verify_files
from seqdeploy.package.triton import DTYPE_TO_TRITON, GraphIO, check_model_config, graph_io

__all__ = ["CheckItem", "PackageCheck", "check_package"]

_TOP_FILES = {PACKAGE_MANIFEST, "README.md", "vocab.txt"}


@dataclass(frozen=True, slots=True)
class CheckItem:
    """One check: its name, whether it passed, and the problems found."""

    name: str
    passed: bool
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "passed": self.passed, "problems": list(self.problems)}


@dataclass
class PackageCheck:
    """Every check of one package."""

    path: Path
    items: list[CheckItem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether the package passed every check (and at least one ran)."""
        return bool(self.items) and all(i.passed for i in self.items)

    def add(self, name: str, problems: list[str]) -> bool:
        """Record a check; return whether it passed."""
        self.items.append(CheckItem(name, not problems, tuple(problems)))
        return not problems

    def render(self) -> str:
        """One ``PASSED | name`` / ``FAILED | name | problem`` line per check, then a summary."""
        lines = []
        for item in self.items:
            if item.passed:
                lines.append(f"PASSED | {item.name}")
            else:
                lines.extend(f"FAILED | {item.name} | {p}" for p in item.problems)
        bad = sum(not i.passed for i in self.items)
        lines.append(
            f"{self.path}: " + ("PASSED: " if self.passed else f"FAILED: {bad} of ") + f"{len(self.items)} checks"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": str(self.path), "passed": self.passed, "checks": [i.to_dict() for i in self.items]}


def _signature_problems(entry: ModelEntry, io: GraphIO) -> list[str]:
    problems = []
    for side, tensors, graph in (("input", entry.spec.inputs, io.inputs), ("output", entry.spec.outputs, io.outputs)):
        want = [t.name for t in tensors]
        if sorted(want) != sorted(graph):
            problems.append(f"manifest {side}s {want} differ from the graph's {sorted(graph)}")
            continue
        for t in tensors:
            dtype, dims = graph[t.name]
            if DTYPE_TO_TRITON[t.dtype] != dtype:
                problems.append(f"{side} '{t.name}': manifest says {t.dtype}, graph has {dtype}")
            want_dims = tuple(d if isinstance(d, int) else -1 for d in t.dims)
            if want_dims != dims:
                problems.append(f"{side} '{t.name}': manifest dims {list(t.dims)}, graph dims {list(dims)}")
    return problems


def check_package(path: str | Path, *, staging: bool = False) -> PackageCheck:
    """Run every package check (see the module docstring) and return the results; never raises for a
    failed check (an archive that cannot be read safely is reported as the ``archive`` check).

    Args:
        path: A package directory or its ``.tar.gz``.
        staging: Accept the writer's staging directory (the writer checks its own work before the rename).

    Raises:
        BackendUnavailable: onnxruntime or tritonclient is not installed.
    """
    # Both are needed before anything is judged: a missing one is exit 3 naming its extra, never a check
    # silently skipped.
    require("onnxruntime", extra="cpu", purpose="reading the packaged graphs' I/O")
    require("tritonclient.grpc.model_config_pb2", extra="triton", purpose="parsing config.pbtxt with Triton's schema")
    from seqdeploy.runtime._archive import is_archive, package_dir

    src = Path(path)
    report = PackageCheck(src)
    if not src.is_dir() and not is_archive(src):
        _check(report, src, staging=staging)  # read_manifest says what it is not
        return report
    try:
        with package_dir(src, prefix="seqdeploy-check-") as root:
            _check(report, root, staging=staging)
    except BackendUnavailable:
        raise
    except SeqdeployError as exc:
        report.add("archive", [str(exc)])
    return report


def _check(report: PackageCheck, root: Path, *, staging: bool) -> None:
    try:
        manifest = read_manifest(root, staging=staging)
    except BackendUnavailable:
        raise
    except SeqdeployError as exc:
        report.add("manifest", [str(exc)])
        return
    report.add("manifest", [])
    files = [e.file for e in manifest.models.values()]
    try:
        data = verify_files(manifest, keep=files, staging=staging)
    except SeqdeployError as exc:
        report.add("files (sha256, listing, no links)", [str(exc)])
        return
    report.add(f"files (sha256 of {len(manifest.files)} files, nothing unlisted, no links)", [])
    for name, entry in manifest.models.items():
        try:
            io = graph_io(data[entry.file])
        except ValueError as exc:
            report.add(f"{name} graph", [str(exc)])
            continue
        report.add(
            f"{name}/config.pbtxt (Triton ModelConfig protobuf + checks against {entry.file})",
            check_model_config(
                root / name,
                io,
                spec=entry.spec,
                kind=entry.kind,
                max_batch=entry.max_batch_size,
                start=entry.start,
                cpu_only=entry.precision == "int8",
                merge=entry.merges_requests,
            ),
        )
        report.add(f"{name} signature (manifest vs graph)", _signature_problems(entry, io))
    for name, trt in manifest.trt_models.items():
        problems = check_trt_config(
            root / name, spec=trt.spec, engines=trt.engines, ranges=trt.ranges, files=manifest.files
        )
        base = manifest.models[trt.for_model]
        if sorted(base.spec.input_names) != sorted(trt.spec.input_names) or sorted(base.spec.output_names) != sorted(
            trt.spec.output_names
        ):
            problems.append(
                f"{name}: its tensors {list(trt.spec.input_names)} -> {list(trt.spec.output_names)} are not those of "
                f"'{trt.for_model}' {list(base.spec.input_names)} -> {list(base.spec.output_names)}"
            )
        report.add(
            f"{name}/config.pbtxt (Triton ModelConfig protobuf + checks against the recorded TensorRT engines: "
            "the engines themselves cannot be opened without TensorRT)",
            problems,
        )
    extra = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name not in manifest.models and p.name not in manifest.trt_models:
            extra.append(f"directory '{p.name}' is not a model of the manifest (Triton would try to load it)")
        elif p.is_file() and p.name not in _TOP_FILES and not (staging and p.name.startswith(".")):
            extra.append(f"file '{p.name}' is not part of the package layout")
    extra.extend(
        f"model '{name}' has no directory with a config.pbtxt"
        for name in [*manifest.models, *manifest.trt_models]
        if not (root / name / "config.pbtxt").is_file()
    )
    report.add("repository layout (every top-level directory is a listed model)", extra)
    if manifest.text is not None:
        problems = []
        try:
            from seqdeploy.runtime._text import parse_vocab

            tokens = parse_vocab((root / manifest.text.vocab).read_bytes(), where=manifest.text.vocab)
            if len(tokens) != manifest.text.vocab_size:
                problems.append(
                    f"{manifest.text.vocab} has {len(tokens)} tokens, vocab_size is {manifest.text.vocab_size}"
                )
            unk = manifest.text.unk_id
            if unk is not None and (unk >= len(tokens) or tokens[unk] != manifest.text.unk_token):
                problems.append(f"unk_id {unk} is not the token {manifest.text.unk_token!r}")
        except SeqdeployError as exc:
            problems.append(str(exc))
        report.add("vocabulary", problems)
