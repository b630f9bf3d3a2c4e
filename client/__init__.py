"""OrbitMQ client."""
