"""The ``driftloop`` command line: the top floor of the house, the one package that may import every other."""
