"""The API's routes, one module per resource; `ROUTERS` is what the app mounts, in order."""

from fastapi import APIRouter

from services.routes import (
    events,
    live,
    ops,
    priority,
    recall,
    retention,
    segments,
    timeline,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (
    users.router,
    segments.router,
    priority.router,
    recall.router,
    timeline.router,
    retention.router,
    events.router,
    ops.router,
    live.router,
)
