"""Shared start-up for the ``jobs/`` entrypoints (``ray job submit ... -- python jobs/<x>.py``).

Each job script is a thin wrapper around the same CLI command that ``methray`` runs, so a
submitted job and a local run execute identical code. The repository root is put on
``sys.path`` so that the job works from ``--working-dir .`` without installing methray.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run(command: str) -> None:
    """Run ``methray <command> <argv...>`` (e.g. ``--config FILE --set k=v``)."""
    from methray.cli import main

    main([command, *sys.argv[1:]])
