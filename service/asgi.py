"""What Hypercorn serves: `hypercorn -c hypercorn.toml service.asgi:app`."""

from service.app import create_app

app = create_app()
