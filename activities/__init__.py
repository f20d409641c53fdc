"""Side effects of a batch job: each retriable, each idempotent."""
