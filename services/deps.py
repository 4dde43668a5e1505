"""Per-app objects that routes receive as dependencies (set up by services.app's lifespan).

Routes take them as `view: ViewDep`, `settings: SettingsDep`, `producer: ProducerDep`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

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


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ViewDep = Annotated[View, Depends(get_view)]
ProducerDep = Annotated[EventProducer, Depends(get_producer)]
