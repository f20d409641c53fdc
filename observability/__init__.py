"""What the worker tells operators: Prometheus metrics and structured (JSON) logs."""
