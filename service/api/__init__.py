"""The /api/v1 blueprint and its children."""

from quart import Blueprint

from service.api import account, auth, factors, passkeys, posts, users

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
blueprint.register_blueprint(users.blueprint)
blueprint.register_blueprint(auth.blueprint)
blueprint.register_blueprint(factors.blueprint)
blueprint.register_blueprint(passkeys.blueprint)
blueprint.register_blueprint(posts.blueprint)
blueprint.register_blueprint(account.blueprint)

# Every answer under these may carry tokens (unknown paths and methods too).
NO_STORE_UNDER = (f"{blueprint.url_prefix}{auth.blueprint.url_prefix}/",)
