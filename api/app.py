"""The FastAPI application: health and metrics, WeCom callback, web chat, operator API."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api.bounds import BoundedBody
from api.console import mount_console
from api.rate_limit import RateLimiter
from api.routes import (
    chat,
    conversations,
    events,
    health,
    knowledge,
    library,
    operator,
    people,
    reports,
    simulator,
    sop_editor,
    sops,
    wecom,
    youzan,
)
from api.service import Service
from api.simulator import Simulator

log = logging.getLogger("sopagent.api")


def create_app(service: Service, *, run_pump: bool | None = None) -> FastAPI:
    """An app bound to ``service``; with ``run_pump`` (default: settings.serve_worker) the pump runs in-process."""
    settings = service.settings
    pump = settings.serve_worker if run_pump is None else run_pump

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if pump:
            service.start()
        yield
        service.stop()
        app.state.simulator.close_all()

    app = FastAPIOffline(title="sopagent", version="0.1.0", lifespan=lifespan,  # /docs with local assets, no CDN
                  description="Private-domain customer-operations SOPs on WeCom: callback, web chat, operator API.")
    app.add_middleware(BoundedBody, max_bytes=settings.max_body_bytes, max_json_depth=settings.max_json_depth,
                       limits=[("/api/knowledge/", settings.knowledge_max_body_bytes)])
    app.state.service = service
    app.state.operator_token = (settings.operator_token.get_secret_value() if settings.operator_token
                                else secrets.token_urlsafe(24))
    app.state.chat_secret = settings.chat_secret.get_secret_value() if settings.chat_secret else secrets.token_hex(32)
    app.state.generated_operator_token = settings.operator_token is None
    app.state.chat_limits = (RateLimiter(settings.chat_rate_per_address, timedelta(minutes=1)),
                             RateLimiter(settings.chat_rate_per_session, timedelta(minutes=1)))
    app.state.login_limits = people.login_limiter()
    app.state.simulator = Simulator()
    service.sync_library(force=True)  # the published versions and pauses survive restarts
    for router in (health.router, wecom.router, chat.router, sops.router, operator.router, sop_editor.router,
                   conversations.router, library.router, reports.router, people.router, simulator.router,
                   knowledge.router, events.router, youzan.router):
        app.include_router(router)
    mount_console(app, settings.console_dir)
    return app
