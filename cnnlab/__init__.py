"""cnnlab: build, inspect, train and look inside convolutional networks (see README.md)."""

from .threads import short_spin

# Before anything imports torch: OpenMP threads waiting for each other spin only briefly, then sleep,
# so a training shares the cores with the app's server, a browser or a second job (cnnlab.threads).
short_spin()
