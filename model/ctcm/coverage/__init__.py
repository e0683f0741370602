"""Coverage: what vectors exercise in the model (model), which P4 statements and
branches ran on bmv2 (p4), their agreement (agree), the committed baseline
(baseline), reports (report) and ``ctcm coverage`` (cli)."""
