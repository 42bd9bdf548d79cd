"""cnnlab: build, inspect, train and look inside convolutional networks (see README.md)."""

from .threads import passive_wait

# Before anything imports torch: OpenMP threads waiting for each other sleep instead of spinning, so
# a training shares the cores with the app's server, a browser or a second job (see cnnlab.threads).
passive_wait()
