"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text

from serving.api import merchants, payments, settlements
from serving.errors import install_error_handlers
from warehouse.connections import make_oltp_engine
from warehouse.settings import Settings, get_settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="Clearhouse API", version="0.1.0",
                  description="Payments, refunds and settlement statements. Money travels as "
                              "integer minor units in strings: {\"amount_minor\": \"1250\", "
                              "\"currency\": \"USD\"}.")
    app.state.settings = settings
    if settings.oltp_url.startswith("sqlite"):
        settings.home_dir.mkdir(parents=True, exist_ok=True)
    app.state.engine = make_oltp_engine(settings.oltp_url)
    install_error_handlers(app)
    for module in (payments, settlements, merchants):
        app.include_router(module.router, prefix=API_PREFIX)

    @app.get("/health", tags=["ops"])
    def health():
        with app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok", "database": app.state.engine.dialect.name,
                "warehouse": settings.warehouse_engine}

    return app
