"""Stimulus: scenarios, the seeded random generator and protocol traffic."""
