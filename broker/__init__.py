"""OrbitMQ broker."""
