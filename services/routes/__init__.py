"""The API's routes, one module per resource; `ROUTERS` is what the app mounts, in order."""

from fastapi import APIRouter

from services.routes import events, live, ops, recall, retention, segments, users

ROUTERS: tuple[APIRouter, ...] = (
    users.router,
    segments.router,
    recall.router,
    retention.router,
    events.router,
    ops.router,
    live.router,
)
