"""Benchmarks behind `orbitmq bench`: each module measures one thing against a same-run baseline."""
