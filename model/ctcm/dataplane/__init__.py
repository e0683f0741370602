"""The data-plane model, in P4 stage order: parse (packet, batch, icrc), track (cmfields, machine, storage, tracker), CNP (cnp), the switch (pipeline, config)."""
