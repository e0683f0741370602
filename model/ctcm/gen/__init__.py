"""Generated artefacts: the P4 includes (p4gen) and the docs (docsgen)."""
