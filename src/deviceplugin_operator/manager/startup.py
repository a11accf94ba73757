"""Start-up failures as one line each: what failed, and what to do about it.

A start-up step that cannot succeed until a person changes something (a namespace that does
not exist, RBAC that refuses a request, an API server that cannot be reached or refuses the
credentials, an unusable certificate, an address that cannot be listened on) raises
``StartupError``. cli.py logs its message as the process's last line and exits 1, instead of a
traceback, or of warnings repeated forever by retry loops that cannot heal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import re
import ssl
from collections.abc import Iterator

from deviceplugin_operator.kube import errors, resources

RBAC_FILES = "deployments/operator/rbac"
"""Where the install's Roles are (``kubectl apply -k deployments/operator/default`` applies them
with the rest)."""

# The API server's wording of an RBAC refusal, stable since Kubernetes 1.6.
_REFUSAL = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<plural>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<namespace>[^"]+)")?'
)
_MISSING_NAMESPACE = re.compile(r'namespaces "(?P<namespace>[^"]+)" not found')


class StartupError(Exception):
    """The operator cannot start; the message names the cause and the fix."""


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Who may not do what, where."""

    user: str | None
    verb: str
    plural: str
    group: str
    namespace: str | None

    @classmethod
    def parse(cls, error: errors.Forbidden) -> Refusal | None:
        found = _REFUSAL.search(error.message)
        if found is None:
            return None
        return cls(
            found["user"], found["verb"], found["plural"], found["group"] or "", found["namespace"]
        )

    def error(self, prefix: str) -> StartupError:
        """``prefix``: the install's name prefix, part of its Role names."""
        who = self.user or "the kubeconfig's user"
        resource = resource_name(self.plural, self.group)
        where = f"in namespace {self.namespace}" if self.namespace else "cluster-wide"
        return StartupError(
            f"RBAC denied: {who} cannot {self.verb} {resource} {where}; "
            f"bind {role_for(self.plural, self.namespace, prefix)} to {who}"
        )


def resource_name(plural: str, group: str) -> str:
    """``daemonsets.apps``, ``pods``: as kubectl and RBAC name a resource."""
    return f"{plural}.{group}" if group else plural


def refused(
    error: errors.Forbidden,
    verb: str,
    resource: resources.Resource,
    namespace: str | None,
    prefix: str,
) -> StartupError:
    """The one line for ``verb`` on ``resource`` refused by RBAC."""
    parsed = Refusal.parse(error)
    user = parsed.user if parsed else None
    return Refusal(user, verb, resource.plural, resource.group, namespace).error(prefix)


def role_for(plural: str, namespace: str | None, prefix: str) -> str:
    """The install's Role or ClusterRole that grants the operator ``plural``."""
    if plural == resources.LEASES.plural:
        return (
            f"the Role {prefix}leader-election-role ({RBAC_FILES}/leader_election_role.yaml) "
            f"in {namespace}"
        )
    if namespace is not None:
        return f"the Role {prefix}manager-role ({RBAC_FILES}/role.yaml) in {namespace}"
    return f"the ClusterRole {prefix}manager-role ({RBAC_FILES}/role.yaml)"


def cause(error: BaseException) -> str:
    """The innermost readable reason: ``Cannot connect to host ... [Connection refused]``."""
    inner = error.__cause__ or error
    return str(inner) or type(inner).__name__


def unreachable(error: errors.TransportError, server: str, kubeconfig: str) -> StartupError:
    return StartupError(
        f"Cannot reach the Kubernetes API server {server} (kubeconfig: {kubeconfig}): "
        f"{cause(error)}; check the server address and certificate authority in the kubeconfig "
        "and that the API server runs"
    )


def unauthorized(server: str, kubeconfig: str) -> StartupError:
    return StartupError(
        f"The Kubernetes API server {server} refused the credentials of {kubeconfig} "
        "(401 Unauthorized); renew the token or client certificate in the kubeconfig"
    )


def namespace_missing(namespace: str, holds: str) -> StartupError:
    """``holds``: what the operator keeps in the namespace, and the flags that name it."""
    return StartupError(
        f"Namespace {namespace} not found: it holds {holds}; create it "
        f"(kubectl create namespace {namespace}) or name an existing one"
    )


def explained(
    error: errors.KubeError, *, server: str, kubeconfig: str, prefix: str
) -> StartupError:
    """The one line for an API error that ended the start where no step gave it context."""
    if isinstance(error, errors.TransportError):
        return unreachable(error, server, kubeconfig)
    if isinstance(error, errors.Unauthorized):
        return unauthorized(server, kubeconfig)
    if isinstance(error, errors.Forbidden) and (refusal := Refusal.parse(error)):
        return refusal.error(prefix)
    if isinstance(error, errors.NotFound) and (missing := _MISSING_NAMESPACE.search(error.message)):
        return namespace_missing(missing["namespace"], "objects the operator writes at start-up")
    return StartupError(
        f"The Kubernetes API server {server} refused a start-up request: {error}; "
        "see its message for what to change"
    )


def unusable_certificate(
    what: str, directory: pathlib.Path, cert_name: str, key_name: str, fix: str
) -> StartupError:
    """Why the pair ``cert_name``/``key_name`` in ``directory`` cannot be served."""
    reason = certificate_problem(directory, cert_name, key_name) or "TLS cannot load the pair"
    return StartupError(f"Unusable {what} in {directory}: {reason}; {fix}")


def certificate_problem(directory: pathlib.Path, cert_name: str, key_name: str) -> str | None:
    """What is wrong with a certificate and key in ``directory``, or None if TLS takes them.

    Called only after loading failed: cryptography (which tells an invalid certificate from
    an invalid key) is imported on this path only, not on a good start with mounted files.
    """
    from cryptography import x509  # noqa: PLC0415 - only on the failure path
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - idem

    cert_path, key_path = directory / cert_name, directory / key_name
    try:
        cert_pem = cert_path.read_bytes()
        key_pem = key_path.read_bytes()
    except OSError as error:
        name = pathlib.Path(str(error.filename)).name if error.filename else "a file"
        return f"{name}: {error.strerror or error}"
    try:
        x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        return f"{cert_name} holds no PEM certificate"
    try:
        serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return f"{key_name} holds no unencrypted PEM private key"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error):
            return f"{key_name} is not the key of the certificate in {cert_name}"
        return f"TLS refuses the pair: {error}"
    return None


@contextlib.contextmanager
def listening(flag: str, address: str) -> Iterator[None]:
    """Turn a failure to listen on ``address`` (given by ``flag``) into a ``StartupError``."""
    try:
        yield
    except OSError as error:
        raise StartupError(
            f"Cannot listen on {address} ({flag}): {error.strerror or error}; "
            "choose a free port or an address of this host"
        ) from error
