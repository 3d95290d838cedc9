"""One module per pipeline stage: a pure function plus a thin CLI (`python -m stages.<name>`)."""
