"""Running the emulator: the command line, servers, TLS, the client helpers and the pytest plugin."""
