"""Errors of the data importers, located like a compiler's: ``path:line:column: message``."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A data file cannot be imported as it stands.

    ``line`` is the 1-based physical line of the file (the header is line 1); ``column`` is
    the 1-based column index, or ``None`` when the problem is not one column (a missing
    column, a row with the wrong number of fields, an empty file); ``str()`` is then
    ``path:line: message``.
    """

    def __init__(self, path: Path | str, line: int, column: int | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.column = column
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        # Like gcc: the column is left out when there is none, rather than printing "None".
        where = f"{self.line}:{self.column}" if self.column is not None else f"{self.line}"
        return f"{self.path}:{where}: {self.message}"

    def __reduce__(self) -> tuple[type[DataFormatError], tuple[Path, int, int | None, str]]:
        # Keeps the error picklable (e.g. across worker processes) despite the custom __init__.
        return (type(self), (self.path, self.line, self.column, self.message))
