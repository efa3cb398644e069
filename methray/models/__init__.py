"""The model zoo. Each architecture lives in its own module and registers itself by name.

Use :func:`build` to instantiate by name and :func:`get` for defaults (window, outputs,
citation). Sequence models take ``(N, L, 4) float32`` and return ``(N, n_outputs)`` raw
scores; see :mod:`methray.models.registry`.
"""

from .registry import ModelInfo, build, get, model_table, n_parameters, names, register  # noqa: F401
from . import mrcnn  # noqa: F401  (registers "mrcnn")
from . import cnn_baseline  # noqa: F401  (registers "cnn_baseline")
from . import deepcpg_dna  # noqa: F401  (registers "deepcpg_dna")
from . import deepsea  # noqa: F401  (registers "deepsea")
from . import basset  # noqa: F401  (registers "basset")
from . import danq  # noqa: F401  (registers "danq", "danq_random_dropout")
from . import conv4_frss  # noqa: F401  (registers "conv4_frss")
from . import deepmethygene  # noqa: F401  (registers "deepmethygene")
from . import context_cnn  # noqa: F401  (registers "context_cnn")
