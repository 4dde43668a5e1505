"""Per-app objects that routes receive as dependencies (set up by services.app's lifespan)."""

from __future__ import annotations

from fastapi import Request

from services.broker import EventProducer
from services.settings import ApiSettings
from services.view import View


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_view(request: Request) -> View:
    view: View = request.app.state.view
    return view


def get_producer(request: Request) -> EventProducer:
    producer: EventProducer = request.app.state.producer
    return producer
