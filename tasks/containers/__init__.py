"""Programs that basebench runs inside containers it starts on a Docker host.

Each is a module run with ``python3 -m`` from the toolbox volume
(``tasks.sessions.toolbox``), in an image that has Python and nothing else: standard
library, pyelftools and ``tasks.readers`` only.
"""
