"""Profile results as data, and their renderings (terminal table, JSON, Markdown, PNG plot).

All latencies are floats in milliseconds; formatting happens only here. JSON schema:
``docs/profile.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqdeploy.profile.timing import LatencyStats, throughput

__all__ = ["SCHEMA_VERSION", "ProfileCase", "ProfileReport", "render_markdown", "render_plot", "render_table"]

SCHEMA_VERSION = 1


@dataclass
class ProfileCase:
    """One backend at one shape: latency statistics, throughput and roofline figures."""

    backend: str
    mode: str  # "sequence" | "streaming"
    graph: str  # "sequence" | "step"
    batch: int
    seq: int
    host: LatencyStats
    device: LatencyStats | None
    gflop: float
    gflops: float
    sgemm_gflops: float | None
    pct_of_sgemm: float | None
    speedup: float | None = None
    winner: bool = False

    @property
    def sequences_per_s(self) -> float:
        """Sequences per second at the median latency."""
        return throughput(self.host.p50_ms, self.batch, self.seq)[0]

    @property
    def tokens_per_s(self) -> float:
        """Tokens per second at the median latency."""
        return throughput(self.host.p50_ms, self.batch, self.seq)[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (non-finite numbers become ``None``)."""

        def num(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else x

        return {
            "backend": self.backend,
            "mode": self.mode,
            "graph": self.graph,
            "batch": self.batch,
            "seq": self.seq,
            "host_ms": self.host.to_dict(),
            "device_ms": self.device.to_dict() if self.device else None,
            "sequences_per_s": num(self.sequences_per_s),
            "tokens_per_s": num(self.tokens_per_s),
            "gflop": self.gflop,
            "gflops": num(self.gflops),
            "sgemm_gflops": num(self.sgemm_gflops),
            "pct_of_sgemm": num(self.pct_of_sgemm),
            "speedup_vs_baseline": num(self.speedup),
            "winner": self.winner,
        }


@dataclass
class ProfileReport:
    """A whole profile run."""

    baseline: str
    backends: list[str]
    env: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    sgemm_runs: dict[str, list[float]] = field(default_factory=dict)
    """GFLOP/s of the sgemm reference per library, measured before (and, if completed, after) the sweep."""
    cases: list[ProfileCase] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    partial: bool = False

    @property
    def sgemm(self) -> dict[str, float]:
        """The sgemm rate per library: the mean of its before/after measurements."""
        return {lib: sum(runs) / len(runs) for lib, runs in self.sgemm_runs.items() if runs}

    def finish(self) -> None:
        """Fill in the roofline share, the speed-ups against the baseline (median latency) and the winner
        of every shape.
        """
        from seqdeploy.profile.sgemm import library_of

        rates = self.sgemm
        for c in self.cases:
            c.sgemm_gflops = rates.get(library_of(c.backend))
            c.pct_of_sgemm = 100.0 * c.gflops / c.sgemm_gflops if c.sgemm_gflops else None
        shapes: dict[tuple[str, int, int], list[ProfileCase]] = {}
        for c in self.cases:
            shapes.setdefault((c.mode, c.batch, c.seq), []).append(c)
        for group in shapes.values():
            base = next((c for c in group if c.backend == self.baseline), None)
            for c in group:
                c.speedup = base.host.p50_ms / c.host.p50_ms if base is not None and c.host.p50_ms > 0 else None
                c.winner = False
            min(group, key=lambda c: c.host.p50_ms).winner = True

    def case(self, backend: str, batch: int, seq: int, mode: str = "sequence") -> ProfileCase | None:
        """The case of ``backend`` at a shape, if measured."""
        return next(
            (c for c in self.cases if (c.backend, c.batch, c.seq, c.mode) == (backend, batch, seq, mode)), None
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON report."""
        return {
            "schema_version": SCHEMA_VERSION,
            "partial": self.partial,
            "baseline": self.baseline,
            "backends": self.backends,
            "env": self.env,
            "options": self.options,
            "model": self.model,
            "sgemm_gflops": self.sgemm,
            "sgemm_runs": self.sgemm_runs,
            "cases": [c.to_dict() for c in self.cases],
            "skipped": self.skipped,
        }


def _f(x: float | None, fmt: str = ".3g") -> str:
    return "—" if x is None or not math.isfinite(x) else format(x, fmt)


def _pct(x: float | None) -> str:
    """Whole percents, except below 1 %: a small RNN on a big GPU runs at 0.01 % of its sgemm (measured on an
    H200), and a column of zeros would say "nothing was measured".
    """
    return _f(x, ".0f" if x is None or x >= 1 else ".2g")


_COLS = (
    "backend",
    "mode",
    "batch",
    "seq",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "mean±std ms",
    "seq/s",
    "tok/s",
    "GFLOP/s",
    "% sgemm",
    "speed-up",
    "",
)


def _rows(report: ProfileReport) -> list[list[str]]:
    rows = []
    for c in sorted(report.cases, key=lambda c: (c.mode, c.batch, c.seq, c.backend)):
        h = c.host
        rows.append(
            [
                c.backend,
                c.mode if c.graph == "sequence" else f"{c.mode} (step graph)",
                str(c.batch),
                str(c.seq),
                _f(h.p50_ms),
                _f(h.p90_ms),
                _f(h.p99_ms),
                f"{_f(h.mean_ms)}±{_f(h.std_ms, '.2g')}",
                _f(c.sequences_per_s, ".4g"),
                _f(c.tokens_per_s, ".4g"),
                _f(c.gflops),
                _pct(c.pct_of_sgemm),
                f"{_f(c.speedup, '.2f')}×" if c.speedup is not None else "—",
                "winner" if c.winner else "",
            ]
        )
    return rows


def _sgemm_text(report: ProfileReport) -> str:
    return ", ".join(
        f"{lib} {sum(runs) / len(runs):.1f} GFLOP/s (" + " then ".join(f"{r:.1f}" for r in runs) + ")"
        for lib, runs in report.sgemm_runs.items()
    )


def render_table(report: ProfileReport) -> str:
    """A fixed-width terminal table, then the sgemm rates and skips."""
    header = list(_COLS)
    header[12] = f"vs {report.baseline}"
    rows = _rows(report)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    if report.sgemm:
        lines.append("sgemm reference: " + _sgemm_text(report))
    lines.extend(f"SKIPPED [{s['mode']}]: {s['reason']}" for s in report.skipped)
    env = report.env
    lines.append(
        f"machine: {env.get('cpu')}, {env.get('cores')} cores, threads {env.get('threads') or 'default'}"
        + (f", GPU {env['gpu']}" if env.get("gpu") else "")
    )
    if report.partial:
        lines.append("PARTIAL: interrupted; only the cases above were measured")
    return "\n".join(lines)


def render_markdown(report: ProfileReport, plot: str | None = None) -> str:
    """A Markdown report: machine, the table, winners per shape, the sgemm reference and the plot."""
    header = list(_COLS)
    header[12] = f"speed-up vs {report.baseline}"
    env = report.env
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v)
    out = [
        "# seqdeploy latency profile" + (" (PARTIAL)" if report.partial else ""),
        "",
        f"- Machine: {env.get('cpu')}, {env.get('cores')} cores; threads: {env.get('threads') or 'library default'}"
        + (f"; GPU: {env['gpu']}" if env.get("gpu") else ""),
        f"- Versions: {versions}",
        f"- Model: {report.model}",
        f"- Latency: host wall time per call (ms), warm-up excluded; {report.options}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    out += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    if report.sgemm:
        out += [
            "",
            "sgemm reference (same run, same threads): " + _sgemm_text(report),
        ]
    winners = [c for c in report.cases if c.winner]
    if winners:
        out += ["", "## Winner per shape", ""]
        out += [
            f"- {c.mode} batch {c.batch}, seq {c.seq}: **{c.backend}** ({_f(c.host.p50_ms)} ms)"
            for c in sorted(winners, key=lambda c: (c.mode, c.batch, c.seq))
        ]
    for s in report.skipped:
        out.append(f"- skipped {s['mode']}: {s['reason']}")
    if plot:
        out += ["", f"![latency vs sequence length]({plot})"]
    return "\n".join(out) + "\n"


def render_plot(report: ProfileReport, path: Path) -> None:
    """Latency (median, with the p90 band) vs sequence length per backend, one panel per batch size."""
    from seqdeploy._lazy import require

    matplotlib = require("matplotlib", extra="plot", purpose="--plot")
    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    cases = [c for c in report.cases if c.mode == "sequence"]
    batches = sorted({c.batch for c in cases})
    fig, axes = plt.subplots(1, max(1, len(batches)), figsize=(4.5 * max(1, len(batches)), 3.8), squeeze=False)
    for ax, batch in zip(axes[0], batches, strict=False):
        for backend in report.backends:
            pts = sorted(
                (c.seq, c.host.p50_ms, c.host.p90_ms) for c in cases if c.batch == batch and c.backend == backend
            )
            if not pts:
                continue
            xs, p50, p90 = zip(*pts, strict=True)
            ax.plot(xs, p50, marker="o", label=backend)
            ax.fill_between(xs, p50, p90, alpha=0.2)
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("sequence length")
        ax.set_ylabel("latency (ms, median; band to p90)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
