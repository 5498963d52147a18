"""The bridge's web front: webhook intake, status page, account connect, health and metrics."""
