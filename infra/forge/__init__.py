"""The offline image forge: stand-in base images built from Debian packages and Go wheels."""
