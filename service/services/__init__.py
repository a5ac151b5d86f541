"""The rules: one class per resource bound to the request's session; no Quart."""
