"""cnnlab: compare CNN architectures the way a Keras notebook does, but reproducibly.

The library is the product; the `cnnlab` command is a thin layer over it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from cnnlab.errors import CnnlabError, DataError, SpecError

__all__ = ["CnnlabError", "DataError", "SpecError", "__version__"]
