"""The model zoo. Each architecture lives in its own module and registers itself by name.

Use :func:`build` to instantiate by name and :func:`get` for defaults (window, outputs,
citation). Sequence models take ``(N, L, 4) float32`` and return ``(N, n_outputs)`` raw
scores; see :mod:`methray.models.registry`.
"""

from .registry import ModelInfo, build, get, names, register  # noqa: F401
from . import mrcnn  # noqa: F401  (registers "mrcnn")
