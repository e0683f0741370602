"""Golden vectors: run a scenario through the model (run), render (render), write (write), the CLI commands (cli)."""
