"""Domain services: take a Session, never commit (the caller owns the transaction)."""
