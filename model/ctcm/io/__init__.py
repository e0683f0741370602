"""Input/output below the model: capture files, line-aware YAML, GC pauses, scapy layers from the field tables."""
