"""An emulated kube-apiserver for the operator's Kubernetes tests.

No real API server can run on the test machines, so the Kubernetes tests drive
the official ``kubernetes`` Python client over real HTTP (loopback, plain HTTP,
JSON only) against `KubeEmulator`, which enforces the API semantics the operator
relies on. It is a test double written for this project, not a conformant API
server: what it does not list below it does not do.

Usage::

    with KubeEmulator() as kube:
        kube.register_crd(crd)
        core = kubernetes.client.CoreV1Api(kube.api_client())

Served resources
    core/v1 namespaces (+/status), configmaps, events, pods (+/status);
    apps/v1 deployments (+/status); batch/v1 jobs (+/status);
    coordination.k8s.io/v1 leases; events.k8s.io/v1 events (the same objects as
    core/v1 events, with the real field renaming: regarding/involvedObject,
    note/message, reportingController/reportingComponent, deprecated*);
    apiextensions.k8s.io/v1 customresourcedefinitions (+/status);
    authentication.k8s.io/v1 selfsubjectreviews (create: the caller's user info);
    authorization.k8s.io/v1 selfsubjectaccessreviews (create: whether RBAC allows the
    caller the resource attributes asked about; see `rbac`);
    every resource of every registered CRD (namespaced or cluster scope; plural,
    singular, kind, shortNames and categories from the CRD; ``/status`` when the
    storage version declares ``subresources.status``; every served version, objects
    stored in the storage version and served in the requested one with only
    ``apiVersion`` changed, i.e. conversion strategy None). Discovery: ``/api``,
    ``/api/v1``, ``/apis``, ``/apis/<group>``, ``/apis/<group>/<version>``,
    ``/version`` (reports v1.33.0), ``/healthz``, ``/readyz``, ``/livez``.
    What an install creates besides (see `install_kinds`): core/v1 serviceaccounts,
    services; rbac.authorization.k8s.io/v1 roles, rolebindings, clusterroles,
    clusterrolebindings; policy/v1 poddisruptionbudgets, stored with the generic
    registry rules only.

kubectl (v1.32, tested by tests/kube/test_kubectl_install.py)
    Served: legacy discovery (kubectl falls back to it from aggregated discovery,
    which is not served), ``kubectl apply`` client side (``-f``/``-k``: GET, then
    POST with the last-applied annotation, or a strategic-merge or merge PATCH),
    ``kubectl get`` of any kind with ``-n``, ``-A``, ``-o wide|yaml|json|name``, the
    Table answers it asks for (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``;
    printer columns of custom resources, see `tables`), ``kubectl delete``.
    Not served: ``/openapi/v2`` and ``/openapi/v3`` (so ``--validate=false`` is needed
    for apply and create; ``kubectl explain`` fails), aggregated discovery
    (``apidiscovery.k8s.io/v2``), ``--server-side`` apply, ``kubectl get -w`` (watches
    answer JSON events, never Tables), kube-apiserver printers for built-in kinds (they
    print Name and Created At), ``kubectl logs|exec|port-forward|top|auth can-i``, and
    ``kubectl wait`` on conditions the emulator's controllers never set.

Emulated semantics
    * Object metadata: ``uid`` (uuid4), ``creationTimestamp``, ``resourceVersion``
      (one global integer counter, as a string, incremented by every committed write
      of any object; list responses carry the counter's value), ``generation`` for
      Deployments, Jobs, CRDs (1 on create, +1 when ``spec`` changes) and custom
      resources (1 on create, +1 when anything outside ``metadata`` changes, which
      with a status subresource means spec and other top-level fields, as the real
      server's custom-resource strategy does). Kinds without a generation on the real
      server (ConfigMap, Lease, Event, Namespace, Pod) have none here either.
      Status writes never change generation. ``generateName`` works.
    * Namespaces are implicit: creating an object in a namespace that does not
      exist creates the Namespace first (itself a write, with its own
      resourceVersion and watch event); default, kube-system, kube-public and
      kube-node-lease exist from the start.
    * Errors are ``Status`` objects (kind Status, apiVersion v1, status Failure,
      message, reason, code, details) worded like the apiserver's: 404 NotFound,
      409 AlreadyExists on create of an existing name, 409 Conflict on a stale
      resourceVersion (or uid precondition), 422 Invalid with causes (DNS-1123
      subdomain names, DNS-1123 label names for namespaces, label and annotation
      syntax, ConfigMap keys, a few kind-specific checks listed below), 400
      BadRequest (malformed bodies, selectors, name/namespace/apiVersion/kind
      mismatches with the URL), 405, 415 UnsupportedMediaType, 401 for an unknown
      bearer token. A create whose body carries a resourceVersion is refused (500,
      as the real storage layer does).
    * Optimistic concurrency: PUT with a stale ``metadata.resourceVersion`` is a 409
      Conflict; a PATCH whose result carries a stale resourceVersion is a 409. PUT
      without a resourceVersion is a 422 ("metadata.resourceVersion: Invalid value:
      0x0: must be specified for an update") for the kinds whose real strategy
      forbids unconditional updates - Leases and all custom resources - and is an
      unconditional update for ConfigMaps, Deployments, Jobs, Events, Namespaces,
      Pods and CRDs, exactly as on the real server (their strategies set
      AllowUnconditionalUpdate). PUT of a missing object is a 404, except that
      Leases and Events are created by PUT (AllowCreateOnUpdate), answering 201.
    * An update that changes nothing (PUT or PATCH) is not a write: the
      resourceVersion does not move and watches see nothing, as on the real server.
    * PATCH: ``application/merge-patch+json`` (RFC 7386),
      ``application/json-patch+json`` (RFC 6902: add, remove, replace, move, copy,
      test; a failed ``test`` or a missing path is a 422), and
      ``application/strategic-merge-patch+json`` for built-in kinds (maps merge,
      ``null`` deletes, lists of containers/initContainers/env/volumes/
      imagePullSecrets merge by ``name``, volumeMounts by ``mountPath``, container
      ports by ``containerPort``, conditions by ``type``, ownerReferences by
      ``uid``, finalizers as a set; ``$patch: delete|replace``, ``$retainKeys``,
      ``$deleteFromPrimitiveList``; ``$setElementOrder`` is accepted and ignored).
      Custom resources refuse strategic merge patches with 415, as the real
      server does. Merge keys are looked up by field name, not by Go type.
    * Status subresource (Deployments, Jobs, Namespaces, Pods, CRDs, custom
      resources with ``subresources.status``): create and writes to the main
      resource ignore ``.status``; PUT/PATCH of ``/status`` change only ``.status``
      (spec, labels, annotations and other metadata are kept), move the
      resourceVersion, never the generation, and honour the resourceVersion
      precondition.
    * Finalizers: DELETE of an object with finalizers sets ``deletionTimestamp``
      (and bumps generation where tracked); the object goes away when an update
      removes its last finalizer; new finalizers cannot be added while deleting.
      DeleteOptions ``preconditions`` (uid, resourceVersion) are checked.
    * DELETE of one object answers a Success Status naming it (the object itself
      for pods, and for an object kept by finalizers), as the generic registry does;
      DELETE of a collection honours ``labelSelector``/``fieldSelector``.
    * Garbage collection through ownerReferences, simplified: deleting an object
      deletes at once (no background delay, no ``propagationPolicy``, no
      ``blockOwnerDeletion``) the namespaced objects of its namespace (of every
      namespace for a cluster-scoped owner) whose ownerReferences name its uid,
      and theirs in turn; a dependent with finalizers is left alone, and an owner
      reference to a uid that never existed is not collected.
      Deleting a namespace deletes everything in it at once; deleting a CRD deletes
      its custom resources and stops serving them.
    * ``dryRun=All`` on writes: validated and answered, nothing stored.
    * Lists: ``labelSelector`` (``=``, ``==``, ``!=``, ``in``, ``notin``, exists,
      ``!key``, ``>``/``<``), ``fieldSelector`` (``=``, ``==``, ``!=``) on
      ``metadata.name`` and ``metadata.namespace`` and, per kind, the fields the
      real server supports (events' involvedObject.*, reason, type, source; pods'
      spec.nodeName, status.phase; ...); other fields are a 400. Items are sorted by
      namespace and name; ``limit``/``continue`` paginate.
    * Watches: ``?watch=true`` (or ``1``, or the old ``/watch/`` paths) stream
      chunked newline-delimited ``{"type", "object"}`` events (ADDED, MODIFIED,
      DELETED, BOOKMARK, ERROR). Without a resourceVersion (or with "0") the
      watch starts with ADDED events for the current objects; with one, it replays
      the events after it from a bounded history (``history_size`` events) and then
      streams live. A resourceVersion older than the history (after `compact` or
      once the history wrapped) yields an ERROR event carrying a 410 Expired Status
      ("too old resource version: X (Y)"), as the watch cache does. Label and field
      selectors filter events, and an object that starts or stops matching a
      selector is seen as ADDED or DELETED. ``timeoutSeconds`` ends the stream;
      ``allowWatchBookmarks=true`` adds BOOKMARK events (every
      ``bookmark_interval`` seconds); ``sendInitialEvents=true`` ends the initial
      ADDED events with a BOOKMARK annotated ``k8s.io/initial-events-end``.
      `close_watches` ends all open streams (an apiserver restart).
    * Leases: ordinary CRUD with resourceVersion conflicts (leader election).
    * Deployment and Job controllers: see `controllers` (rollouts complete after
      ``rollout_delay``; `stall_deployment` makes them exceed
      ``spec.progressDeadlineSeconds``; jobs succeed after ``job_delay`` or fail per
      `fail_jobs`, or stay active per `hold_jobs`).
    * Kind-specific defaulting and validation: Deployments (replicas, strategy,
      revisionHistoryLimit, progressDeadlineSeconds and pod-template defaults;
      selector required and matching the template labels, immutable selector,
      containers with name and image), Jobs (parallelism, completions,
      backoffLimit, generated selector and pod labels; restartPolicy Never or
      OnFailure; immutable template, selector and completions), ConfigMaps (key
      syntax, ``immutable``), Leases (positive durations), events.k8s.io/v1 creates
      (eventTime, reportingController, reportingInstance, action, reason, type),
      CRDs (names, scope, one storage version, schemas required), custom resources
      (the CRD's structural schema: pruning of unknown fields, defaults, nullable,
      type/required/enum/bounds/length/pattern/items checks; see `schema`).
    * Users: ``Authorization: Bearer <token>`` for tokens given to `add_token`
      (unknown tokens get 401), or an ``X-Emulator-User`` (and ``X-Emulator-Groups``)
      header, or ``Impersonate-User``/``Impersonate-Group``; otherwise
      system:anonymous. ``KubeEmulator(rbac=True)`` enforces RBAC (Roles,
      ClusterRoles, their bindings, the ``impersonate`` permission, a service
      account's implied groups, 403 Status bodies): see `rbac` for what it covers.
      rbac.authorization.k8s.io/v1 kinds, ServiceAccounts and Secrets are served. Every request is logged (`requests`) with method, path,
      query, content type, user, and the RBAC verb/group/resource/subresource it
      needed (`rbac_rules_used`).
    * Faults: `inject` a status (e.g. 429 with Retry-After, 500, 503, 409, 410)
      and/or a delay for the next N requests matching a method and path regex,
      or (``hold=True``) keep them waiting until `Fault.release`, so that a test
      can order a request after its own writes; `Fault.hits` counts the requests
      met; `clear_faults` removes them.
    * ValidatingAdmissionPolicies and their bindings: on CREATE and UPDATE over
      HTTP, the CEL validations are evaluated with cel-python and a denial answers
      as the API server does (see `admission.py` for what of them is covered).

Not emulated (a test that needs one of these needs a real cluster)
    RBAC beyond what `rbac` lists (aggregation, non-resource URLs, escalate/bind
    checks; with ``rbac=False``, the default, every request is allowed and only
    the log says which permissions were used), admission webhooks and
    the other admission plugins, server-side apply (``application/apply-patch+yaml`` is a 415),
    ``managedFields``, protobuf/CBOR/YAML bodies (requests must be JSON or carry no
    Content-Type; responses are always JSON), TLS, API priority and fairness,
    garbage collection beyond the simplified one above, pods and ReplicaSets behind
    Deployments and Jobs (pods exist only when a test creates them), real namespace
    lifecycle (Terminating phase), most kind-specific validation and defaulting
    (only what is listed above), CEL validation rules, CRD conversion webhooks,
    ``format`` checks in CRD schemas, scale subresources, ``resourceVersionMatch``
    and consistent snapshots for ``continue`` (later pages see the current state),
    watch-cache latency, "too large resource version" errors, and etcd's per-key
    revision semantics beyond one global counter.
"""

from __future__ import annotations

from .errors import ApiError
from .server import Fault, KubeEmulator, RequestRecord, User

__all__ = ["ApiError", "Fault", "KubeEmulator", "RequestRecord", "User"]
