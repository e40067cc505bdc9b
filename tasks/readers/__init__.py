"""Readers of a saved image (a ``docker save`` archive): what its layers hold
(``layers``) and the program it runs (``program``).

Not stages: the inspect stage calls them here, and the analysis container
(``tasks.containers.analysis``) calls them on a build host, so they use the standard
library and pyelftools only.
"""
