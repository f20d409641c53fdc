"""HTTP client of the OpenAI-style files and batches API (Kong, OpenAI, Azure, emulator)."""
