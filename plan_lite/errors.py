"""Errors that the CLI reports as one line (exit code 2, no traceback)."""


class PlanLiteError(Exception):
    """A user-facing fault: bad input file, bad dataset, bad option. The message names the file and the fault."""


class DatasetError(PlanLiteError):
    """A dataset on disk is malformed (see ``plan_lite.data.validate``)."""


class CheckpointError(PlanLiteError):
    """A checkpoint cannot be loaded safely (e.g. it carries pickled code)."""
