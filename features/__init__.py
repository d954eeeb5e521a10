"""Bank data -> canonical tables -> point-in-time features -> the Redis online store."""
