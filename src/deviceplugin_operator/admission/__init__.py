"""Admission webhooks: defaulting and validation of the device-plugin resources, served over HTTPS.

Pure rules live in ``rules``; ``server`` adapts them to AdmissionReview v1 on aiohttp. Nothing
here talks to the API server: the controller layer passes what warnings need to know.
"""
