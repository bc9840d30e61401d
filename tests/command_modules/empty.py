"""A module without commands: naming it in a tenant file is a mistake, refused at start."""
