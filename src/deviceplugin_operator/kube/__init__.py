"""The only package that talks to the Kubernetes API server.

It owns the connection (``client``), the description of the resources the operator touches
(``resources``), the raw-JSON object shape and its accessors (``objects``), and the one
exception tree every caller catches (``errors``). The controller runtime and the composition
root call it; it imports nothing from them, and nothing else in the project imports the client
library.
"""
