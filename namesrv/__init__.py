"""OrbitMQ namesrv."""
