"""OrbitMQ controller."""
