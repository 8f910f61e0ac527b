"""Admin API: bearer tokens with roles (`central`, `app:<id>`)."""
