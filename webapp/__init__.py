"""A1 SaaS Pro: resell LLM API access on top of a LiteLLM proxy."""

from __future__ import annotations

import logging

from flask import Flask

from webapp.config import INSECURE_SECRET_KEYS, Config, config_for_environment
from webapp.extensions import csrf, db, login_manager, migrate
from webapp.models import User


def create_app(config_class: type[Config] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_object(config_class or config_for_environment())
    _refuse_insecure_production(app)
    _configure_logging(app)
    register_extensions(app)
    register_blueprints(app)
    register_cli(app)
    from webapp.errors import register_error_handlers

    register_error_handlers(app)
    return app


def _refuse_insecure_production(app: Flask) -> None:
    if app.config.get("ENV_NAME") == "production" and (
        app.config["SECRET_KEY"] in INSECURE_SECRET_KEYS or len(app.config["SECRET_KEY"]) < 32
    ):
        raise RuntimeError("Refusing to start in production without a real SECRET_KEY (32+ random characters).")


def _configure_logging(app: Flask) -> None:
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def register_extensions(app: Flask) -> None:
    from webapp import litellm, proxy

    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.config.get("MIGRATIONS_DIR", _migrations_dir())))
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"
    csrf.init_app(app)
    litellm.init_app(app)
    proxy.init_app(app)


def _migrations_dir() -> str:
    from webapp.config import PROJECT_ROOT

    return str(PROJECT_ROOT / "migrations")


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


def register_blueprints(app: Flask) -> None:
    from webapp.api import admin_bp, tenant_bp
    from webapp.auth import bp as auth_bp
    from webapp.dashboard import bp as dashboard_bp
    from webapp.keys import bp as keys_bp
    from webapp.main import bp as main_bp
    from webapp.sync import bp as sync_bp

    for page_blueprint in (auth_bp, main_bp, keys_bp, sync_bp, dashboard_bp):
        app.register_blueprint(page_blueprint)
    from webapp.proxy import bp as proxy_bp

    for api_blueprint in (admin_bp, tenant_bp, proxy_bp):
        csrf.exempt(api_blueprint)
        app.register_blueprint(api_blueprint)


def register_cli(app: Flask) -> None:
    from webapp.cli import register_commands

    register_commands(app)
