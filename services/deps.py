"""Per-app objects that routes receive as dependencies (set up by services.app's lifespan).

Routes take them as `view: ViewDep`, `settings: SettingsDep`, `producer: ProducerDep`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.broker import EventProducer
from services.errors import ApiError
from services.settings import ApiSettings
from services.view import View
from streams.core.policy import Policy, PolicyError, load_policy


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_policy(request: Request) -> Policy:
    """The worker's policy: the app's own when it was given one (`app.state.policy`), else
    loaded once, as the worker loads it, from PULSE_POLICY_FILE and PULSE_CHURN_MODEL_FILE.

    The view's user documents are built with it (windows, event types), so the API must run
    with the worker's files. Answers 500 policy_unavailable when they cannot be loaded.
    """
    state = request.app.state
    policy: Policy | None = getattr(state, "policy", None)
    if policy is None:
        settings = get_settings(request)
        try:
            policy = load_policy(settings.policy_file, settings.churn_model_file)
        except PolicyError as exc:
            raise ApiError(
                500,
                "policy_unavailable",
                f"the API cannot load the worker's policy ({exc}); fix PULSE_POLICY_FILE or "
                "PULSE_CHURN_MODEL_FILE and restart it",
            ) from None
        state.policy = policy
    return policy


def get_view(request: Request) -> View:
    view: View = request.app.state.view
    if view.policy is None:
        view.policy = get_policy(request)
    return view


def get_producer(request: Request) -> EventProducer:
    producer: EventProducer = request.app.state.producer
    return producer


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
PolicyDep = Annotated[Policy, Depends(get_policy)]
ViewDep = Annotated[View, Depends(get_view)]
ProducerDep = Annotated[EventProducer, Depends(get_producer)]
