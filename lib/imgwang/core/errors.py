"""User-facing errors: the entry points print their message as one line and exit non-zero."""


class ImgwangError(Exception):
    """A problem the user can fix (bad parameter, missing data, existing run); no traceback needed."""


class DataError(ImgwangError):
    """Data is missing, not in Imagewang layout, or cannot be fetched."""


class ConfigError(ImgwangError):
    """An unknown task/model/parameter or a value out of range."""
