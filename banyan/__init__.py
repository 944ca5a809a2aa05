"""Banyan: versioned prompts, experiments and production logging for LLM apps."""
