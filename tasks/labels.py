"""The ``org.basebench.*`` labels basebench puts on images, containers and networks.

One definition for the forge (infra) that writes them and the stages that read them.
"""

RUN = "org.basebench.run"  # what a run made: its run id; swept by label at the end
FORGED = "org.basebench.forged"  # "true" on a stand-in forged from Debian packages
RECIPE_HASH = "org.basebench.recipe-hash"  # which recipe forged the stand-in
UPSTREAM = "org.basebench.upstream"  # the upstream image a stand-in stands in for
PACKAGES = "org.basebench.packages"  # the Debian packages it was forged from
DEVIATION = "org.basebench.deviation"  # where it differs from the upstream recipe
TOOLBOX = "org.basebench.toolbox"  # "true" on a host's analysis toolbox volume (kept across runs)
