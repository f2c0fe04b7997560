"""``python -m gravity.llm.worker_main MODULE:FACTORY``: a backend worker process.

A module of its own, imported by nothing, so that ``-m`` runs it fresh (``gravity.llm.worker`` is
already imported by the package); see ``gravity.llm.worker``.
"""

import sys

from gravity.llm.worker import main

if __name__ == "__main__":
    main(sys.argv[1:])
