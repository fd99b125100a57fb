"""The ``unet`` command line: ``summary``, ``port``, ``parity``, ``predict``."""
