"""Talking to registries (OCI distribution): names, credentials, auth, transport, protocol,
and the parallel, resumable blob transfers the ``docker://`` store is built on.

Layers, bottom up: ``names``, ``creds``, ``auth`` (a generator flow, no I/O),
``tls`` and ``transport`` (HTTP, retries, redirects), ``client`` (the
protocol), ``download``/``upload``/``blobcache``/``knowledge`` (transfers).
"""
