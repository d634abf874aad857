"""The torch-free runtime: load a package made by ``seqdeploy package`` and run it.

``pip install "seqdeploy[cpu]"`` (numpy, click, onnxruntime) is all it needs: it never imports torch or
onnx (a test runs it with torch blocked). ::

    from seqdeploy import runtime

    p = runtime.load("pkg/")                        # or "pkg.tar.gz"; sha256 of every file checked first
    p.predict_text(["a fine film"])                 # tokens, ids, output, labels, probabilities
    p.predict(ids, lengths=lengths)                 # batch-first numpy in, {"output", "h_n", "c_n"} out
    s = p.stream(batch=1)                           # carries h_n/c_n between chunks
    s.feed(chunk1); s.feed(chunk2); s.reset()

A :class:`Predictor` is safe to share between threads; a :class:`Stream` belongs to one caller. Servers
use :meth:`Predictor.run` (complete feeds, START and states included) on the stream model
``NAME_stream`` to drive many sequences in one batch (or :meth:`Predictor.check` per request, then
:meth:`Predictor.execute` on the merged batch). :func:`open_package` + :func:`build_predictor` check a
package's files once and build several predictors from the same verified bytes.
"""

from __future__ import annotations

from seqdeploy.runtime._archive import extract
from seqdeploy.runtime._predictor import (
    BACKENDS,
    Predictor,
    Signature,
    Stream,
    VerifiedPackage,
    build_predictor,
    load,
    open_package,
)

__all__ = [
    "BACKENDS",
    "Predictor",
    "Signature",
    "Stream",
    "VerifiedPackage",
    "build_predictor",
    "extract",
    "load",
    "open_package",
]
