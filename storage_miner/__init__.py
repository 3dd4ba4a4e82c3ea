"""The storage miner: holds shards for validators and proves it.

A shard store (filesystem or S3) behind one interface, an index of what is held for whom,
a prover that answers Merkle challenges from saved trees, and a scrubber; the aiohttp
service on top is thin.
"""
