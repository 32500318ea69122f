"""Reference implementation of the resumable numeric-stream protocol (NSP)."""
