class FusionFramesError(ValueError):
    """A user's mistake (bad input, missing file, wrong shape): the CLI prints it and exits with status 2."""
