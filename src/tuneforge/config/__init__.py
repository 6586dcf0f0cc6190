"""The parameter system: schema, loader, derived values and rules."""
