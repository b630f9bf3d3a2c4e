"""Shared plumbing for every OrbitMQ process: config files, logging, ports, child processes."""
