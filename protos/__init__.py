"""OrbitMQ's internal gRPC protocols: .proto sources and the Python code generated from them.

Generated modules (`*_pb2.py`, `*_pb2_grpc.py`) are committed; `python -m orbitmq.protos.build`
regenerates them and `tests/test_protos.py` fails if regenerating would change anything.
"""
