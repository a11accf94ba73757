"""The admission package's exceptions, each mapped to one kind of answer.

::

    AdmissionError
    ├── Rejected          the object is not admitted: a denial carrying the message (403, or
    │                     400 when the object itself could not be read)
    ├── MalformedReview   the HTTP body is not an AdmissionReview v1: HTTP 400, no review
    └── InvalidMapping    an AcceleratorFunction or FpgaRegion cannot be mapped to a
                          resource (the watcher logs it and drops the name's mapping;
                          pods asking for it are denied)

Pure functions raise these and nothing else for bad input; anything else escaping them is a
bug, which the server logs and turns into a denial.
"""

from __future__ import annotations


class AdmissionError(Exception):
    """Base of the admission package's exceptions."""


class Rejected(AdmissionError):  # noqa: N818 - reads as the verdict it is
    """The object is not admitted; ``message`` is what kubectl prints after
    ``admission webhook "<name>" denied the request: ``."""

    def __init__(self, message: str, code: int = 403):
        super().__init__(message)
        self.message = message
        self.code = code
        """``status.code`` of the denial: 403 for a policy, 400 for an unreadable object."""


class MalformedReview(AdmissionError):  # noqa: N818 - the answer is "400 malformed"
    """The body of an admission request is not a readable AdmissionReview v1."""


class InvalidMapping(AdmissionError):  # noqa: N818 - names the bad input, as Rejected
    """An FPGA mapping resource has identifiers that do not form a resource name."""
