"""Connecting the official Couchbase SDK (sync and acouchbase) from cbembed's settings, and
mapping its exceptions onto cbembed's error tree."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from connector.config import Settings
from connector.errors import ConfigError, StorageError
from connector.events import Keyspace


def cluster_options(settings: Settings) -> Any:
    from couchbase.auth import PasswordAuthenticator
    from couchbase.options import ClusterOptions, ClusterTimeoutOptions

    cb = settings.couchbase
    password = cb.password.get_secret_value()
    if not password:
        raise ConfigError([(
            "couchbase.password", "is empty: set CBEMBED_COUCHBASE__PASSWORD (or the file)"
        )])
    auth_kwargs: dict[str, Any] = {}
    if cb.ca_cert is not None:
        auth_kwargs["cert_path"] = str(cb.ca_cert)
    if cb.sasl_mechanism == "PLAIN":
        auth_kwargs["allowed_sasl_mechanisms"] = ["PLAIN"]
    timeout = timedelta(seconds=cb.timeout_s)
    return ClusterOptions(
        PasswordAuthenticator(cb.username, password, **auth_kwargs),
        timeout_options=ClusterTimeoutOptions(
            kv_timeout=timeout, connect_timeout=timeout, query_timeout=timeout,
            search_timeout=timeout, management_timeout=timeout,
        ),
    )


async def connect_async(settings: Settings) -> Any:
    """An acouchbase Cluster on the running loop."""
    from acouchbase.cluster import Cluster
    from couchbase.exceptions import CouchbaseException

    try:
        cluster = await Cluster.connect(settings.storage, cluster_options(settings))
        await cluster.wait_until_ready(timedelta(seconds=settings.couchbase.timeout_s))
    except CouchbaseException as e:
        raise StorageError(f"cannot connect to {settings.storage}: {e}") from e
    return cluster


def connect_sync(settings: Settings) -> Any:
    from couchbase.cluster import Cluster
    from couchbase.exceptions import CouchbaseException

    try:
        cluster = Cluster(settings.storage, cluster_options(settings))
        cluster.wait_until_ready(timedelta(seconds=settings.couchbase.timeout_s))
    except CouchbaseException as e:
        raise StorageError(f"cannot connect to {settings.storage}: {e}") from e
    return cluster


def collection(cluster: Any, ks: Keyspace) -> Any:
    return cluster.bucket(ks.bucket).scope(ks.scope).collection(ks.collection)


def metadata_keyspace(settings: Settings) -> Keyspace:
    if settings.couchbase.metadata_keyspace:
        return Keyspace.parse(settings.couchbase.metadata_keyspace)
    if not settings.pipelines:
        raise ConfigError([("couchbase.metadata_keyspace", "set it, or configure a pipeline")])
    return Keyspace(settings.pipelines[0].parsed_keyspace.bucket, "cbembed", "meta")


def is_temporary(exc: BaseException) -> bool:
    """Worth retrying: timeouts, temporary failures, a service or node not reachable now."""
    from couchbase import exceptions as cbx

    temporary = tuple(
        getattr(cbx, name) for name in (
            "TemporaryFailException", "AmbiguousTimeoutException",
            "UnAmbiguousTimeoutException", "TimeoutException", "ServiceUnavailableException",
            "RequestCanceledException", "DocumentLockedException",
        ) if hasattr(cbx, name)
    )
    return isinstance(exc, temporary)
