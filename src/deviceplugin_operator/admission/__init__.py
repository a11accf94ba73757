"""Admission webhooks: defaulting and validation of the device-plugin resources and the SGX and
FPGA Pod mutators, served over HTTPS. The composition root (manager) builds an
``AdmissionServer`` for the enabled kinds and starts it; the FPGA watchers feed its
``fpga_mappings``; the manifest generators can read ``endpoints.webhooks``.

Pure parts, no I/O: ``review`` (AdmissionReview v1, JSON patch), ``rules`` (CR defaulting and
validation), ``sgx`` and ``fpga`` (Pod mutators), ``resources`` (quantities and extended
resource requests), ``endpoints`` (which webhooks exist). ``server`` adapts them to aiohttp
and TLS. Nothing here talks to the API server: cluster facts arrive through provider
callbacks. Exceptions: ``errors``.
"""

from deviceplugin_operator.admission.endpoints import Webhook, webhooks
from deviceplugin_operator.admission.errors import (
    AdmissionError,
    InvalidMapping,
    MalformedReview,
    Rejected,
)
from deviceplugin_operator.admission.fpga import Mappings
from deviceplugin_operator.admission.server import AdmissionServer, context_provider, tls_context

__all__ = [
    "AdmissionError",
    "AdmissionServer",
    "InvalidMapping",
    "MalformedReview",
    "Mappings",
    "Rejected",
    "Webhook",
    "context_provider",
    "tls_context",
    "webhooks",
]
