"""What Hypercorn serves: `hypercorn -c hypercorn.toml service.asgi:app`."""

from service.app import create_app
from service.unread_body import UnreadBody

app = create_app()
# Hypercorn's HTTP/1.1 leaves an answer's unread request body to the app.
app.asgi_app = UnreadBody(  # type: ignore[method-assign,assignment]
    app.asgi_app, drain_bytes=app.config["MAX_CONTENT_LENGTH"]
)
