"""A1 SaaS Pro: resell LLM API access on top of a LiteLLM proxy."""

from __future__ import annotations

import logging

from flask import Flask
from flask_babel import gettext

from webapp.config import Config, config_for_environment, startup_problems
from webapp.extensions import csrf, db, login_manager, migrate
from webapp.models import User


def create_app(config_class: type[Config] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_object(config_class or config_for_environment())
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY_BYTES"]  # /v1 raises its own (webapp.proxy)
    _refuse_insecure_production(app)
    _configure_logging(app)
    register_extensions(app)
    register_blueprints(app)
    register_cli(app)
    from webapp.errors import register_error_handlers

    register_error_handlers(app)
    return app


def _refuse_insecure_production(app: Flask) -> None:
    problems = startup_problems(app.config)
    if problems:
        raise RuntimeError(f"Refusing to start ({app.config.get('ENV_NAME')}): " + " ".join(problems))


def _configure_logging(app: Flask) -> None:
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # Every job run (webhook delivery polls every few seconds) would log two lines; our jobs log what they did.
        logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)


def register_extensions(app: Flask) -> None:
    from webapp import formatting, headers, i18n, litellm, proxy, replica

    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.config.get("MIGRATIONS_DIR", _migrations_dir())))
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.id_attribute = "new_login_id"  # sessions carry the user's epoch: webapp.auth.sessions
    login_manager.login_message_category = "info"
    login_manager.login_message = i18n.N_("Please sign in to see this page.")
    login_manager.localize_callback = gettext
    csrf.init_app(app)
    i18n.init_app(app)
    formatting.init_app(app)
    litellm.init_app(app)
    proxy.init_app(app)
    headers.init_app(app)
    replica.init_app(app)


def _migrations_dir() -> str:
    from webapp.config import PROJECT_ROOT

    return str(PROJECT_ROOT / "migrations")


@login_manager.user_loader
def load_user(login_id: str) -> User | None:
    from webapp.auth.sessions import user_for_login_id

    return user_for_login_id(login_id)


def register_blueprints(app: Flask) -> None:
    from webapp.api import admin_bp, tenant_bp
    from webapp.auth import bp as auth_bp
    from webapp.billing.views import bp as billing_bp
    from webapp.dashboard import bp as dashboard_bp
    from webapp.keys import bp as keys_bp
    from webapp.main import bp as main_bp
    from webapp.sync import bp as sync_bp
    from webapp.team import bp as team_bp
    from webapp.webhooks.api import admin_api_bp as webhooks_admin_api_bp
    from webapp.webhooks.api import api_bp as webhooks_api_bp
    from webapp.webhooks.views import bp as webhooks_bp

    for page_blueprint in (auth_bp, main_bp, keys_bp, sync_bp, dashboard_bp, webhooks_bp, billing_bp, team_bp):
        app.register_blueprint(page_blueprint)
    from webapp.api.openapi import bp as openapi_bp
    from webapp.hooks import bp as hooks_bp
    from webapp.proxy import bp as proxy_bp

    app.register_blueprint(openapi_bp)
    for api_blueprint in (admin_bp, tenant_bp, proxy_bp, webhooks_api_bp, webhooks_admin_api_bp, hooks_bp):
        csrf.exempt(api_blueprint)
        app.register_blueprint(api_blueprint)


def register_cli(app: Flask) -> None:
    from webapp.cli import register_commands

    register_commands(app)
