"""The database: the engine and its lifecycle, each request's session and read runner,
hot statements on the driver, replicas, pagination, and the one 503 classifier."""
