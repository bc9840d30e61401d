"""The demo tenant (`tenant.toml`) and its commands (`commands.py`)."""
