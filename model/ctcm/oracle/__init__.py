"""The oracle: compare outputs with field-level diffs (compare) and read observed files, streaming (files)."""
