"""The webhook receiver: a provider's batch events, verified, relayed to the jobs that wait."""
