"""A run on its Docker hosts: what one run makes, holds and shares on the hosts it uses.

``session`` opens the run on one host (its network, the bases and builders pulled once,
the analysis set-up) and closes it; ``toolbox`` is what a host that analyses its own
images receives; ``pool`` hands the run's cells out to host slots and moves a cell when
its host is lost; ``lanes`` says when each stage of a cell may run on its host.

The pool and the lane scheduler live here, not in ``tasks.hosts``: their state belongs
to one run (its slots, its cells in flight, its waiting probes) and ends with it, while
``tasks.hosts`` only reaches engines and knows what every run shares on a Prefect
server (``tasks.hosts.limits``). This package sits above ``tasks.hosts`` and above
``tasks.stages``: it passes the stages what they need, and neither imports it.
"""
