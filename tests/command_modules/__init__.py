"""Command modules for the tests: `basic` is loaded by tests/tenants/commands.toml, the
others are refused at start for the reasons their names say."""
