"""ctcm PTF suite support: targets, the model switch, the base test class, the harness."""
