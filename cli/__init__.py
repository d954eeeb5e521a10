"""The ``nbo`` command line."""
