"""APX orchestrator: the only writer of configuration.

Agents submit intents; the orchestrator admits, validates and routes them and
records every step. Start reading at :mod:`orchestrator.pipeline`; the pieces are
wired together in :mod:`orchestrator.bootstrap`.
"""

__version__ = "0.1.0"
