"""Any-size jobs without Temporal: split an input into shards, merge their results, cost.

Everything here is plain streaming file work with bounded memory, so activities
can call it and tests and benchmarks can run it without a server.
"""
