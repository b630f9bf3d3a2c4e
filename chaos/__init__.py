"""OrbitMQ's chaos suite: fault injection through the Toxiproxy HTTP API, process faults, a seeded
nemesis, a workload and a checker over recorded histories."""
