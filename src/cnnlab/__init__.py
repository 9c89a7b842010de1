"""cnnlab: compare CNN architectures the way a Keras notebook does, but reproducibly.

The library is the product; the `cnnlab` command is a thin layer over it. The names below are
the notebook-facing API; they are imported on first use, so `import cnnlab` (and
`cnnlab --version`) stays fast and does not load torch.

    import cnnlab
    spec = cnnlab.load_model("seed/model-2")
    result = cnnlab.train_model(spec, cnnlab.load_dataset("mnist"), epochs=1, train_limit=2000)
    outcome = cnnlab.run_study("seed", seeds=2, epochs=1, train_limit=2000, directory="s")
    cnnlab.build_report("s")
"""

from __future__ import annotations

import importlib
from typing import Any

from cnnlab.errors import CnnlabError, DataError, SpecError

__version__ = "0.1.0"

# Public name -> the module that defines it.
_LAZY = {
    "load_model": "cnnlab.spec",
    "load_study": "cnnlab.spec",
    "model_from_dict": "cnnlab.spec",
    "model_to_toml": "cnnlab.spec",
    "list_presets": "cnnlab.presets",
    "load_dataset": "cnnlab.data",
    "build_model": "cnnlab.build",
    "summarize": "cnnlab.summary",
    "import_keras": "cnnlab.keras_import",
    "train_model": "cnnlab.train",
    "train_seeds": "cnnlab.multiseed",
    "run_study": "cnnlab.study",
    "study_status": "cnnlab.study",
    "study_runs": "cnnlab.study",
    "open_store": "cnnlab.store",
    "build_report": "cnnlab.report",
    "load_run": "cnnlab.trained",
    "export_run": "cnnlab.export",
    "results": "cnnlab.tidy",
}

__all__ = ["CnnlabError", "DataError", "SpecError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
