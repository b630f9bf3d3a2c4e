"""OrbitMQ's proxy: RocketMQ 5's public gRPC protocol (`apache.rocketmq.v2.MessagingService`)
in front of OrbitMQ brokers, so the official RocketMQ 5 clients work unchanged."""
