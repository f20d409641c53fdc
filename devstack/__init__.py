"""The local stack, started one way for `make demo`/`make up`, the tests and the benchmarks.

- ``devstack.temporal``: the Temporal dev server and time-skipping test server
  (pip-installed binaries), with the search attributes of contracts.names;
- ``devstack.emulator``: the gateway emulator as a subprocess;
- ``devstack.worker``: worker.py as a subprocess;
- ``devstack.ports``: free ports on 127.0.0.1;
- ``devstack.scripted``: scripted stand-ins for the activities (no gateway);
- ``devstack.local``: the embedded default behind ``python -m scripts.stack``.
"""
