"""The HTTP API: the CLI's operations under ``/v1/`` for agents on other hosts and for humans.

:func:`orchestrator.api.app.create_api` builds the FastAPI application from a
wired :class:`~orchestrator.bootstrap.App`; ``apx serve`` runs it on uvicorn.
"""
