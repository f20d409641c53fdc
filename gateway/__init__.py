"""HTTP client of the OpenAI-style files and batches API, as Kong, OpenAI, Azure or the emulator serve it."""
