"""``GET /metrics``: the Prometheus exposition of :mod:`orchestrator.service_metrics`.

Public like any exporter endpoint (a scraper has no token), which is safe
because no series names a tenant or an intent. ``create_api`` includes
:data:`router`; the App comes from ``request.app.state.apx``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from orchestrator.api.deps import apx_app

__all__ = ["router"]

router = APIRouter(tags=["service"])

_EXPOSITION = {
    "text/plain": {"schema": {"type": "string"}},
    "application/openmetrics-text": {"schema": {"type": "string"}},
}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text format, or OpenMetrics when asked for.", "content": _EXPOSITION}
    },
)
def metrics(request: Request) -> Response:
    """Counters of this process's decisions and gauges read from the database now.

    Sends OpenMetrics when the ``Accept`` header asks for it, else the
    Prometheus text format.
    """
    body, content_type = apx_app(request).service_metrics.exposition(request.headers.get("accept"))
    return Response(content=body, media_type=content_type)
