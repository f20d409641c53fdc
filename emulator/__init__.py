"""A local server of the Batch API's files and batches routes, for demos and tests.

Like Azurite for Azure Storage: one command (``python -m emulator``), the real
API's shapes and errors, and knobs (``emulator.knobs``) to make it slow, flaky,
Azure-flavoured or backed by a real model server. See docs/emulator.md.
"""
