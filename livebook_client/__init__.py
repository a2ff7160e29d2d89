"""livebook_client: attach a REPL, script or notebook to a pynode cluster and sample remotely."""
