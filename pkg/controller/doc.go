// Package controller is the Kubernetes endpoint source of the EPP: a set of
// controller-runtime reconcilers that turn InferencePools (named up front,
// or found at run time by their endpointPickerRef) or a plain label
// selector, and the Pods they select, into datastore endpoints, and that
// read each pool's InferenceObjective priorities and InferenceModelRewrite
// rules for the request path.
//
// # Endpoints
//
// A Pod becomes endpoints of a pool when it is Ready, has an IP, carries no
// deletion timestamp, lives in the pool namespace and matches the pool's
// selector. It yields one endpoint per target port, named "<pod>-rank-<i>"
// where i is the port's index in targetPorts; the llm-d.ai/active-ports
// annotation (or, when that is absent,
// inference.networking.k8s.io/active-ports) restricts which ports are
// active. Every rank carries the Pod's spec.nodeName as its node (empty
// until the Pod is scheduled; binding it updates the endpoints) and, in
// pool mode, the pool's name as its Pool (empty in selector mode). With one
// pool or a selector every endpoint is reported under the datastore source
// SourceName.
//
// The pool reconciler owns the full picture of a pool: when the pool
// appears or its selector or ports change it recomputes every endpoint from
// the Pod cache (Store.Replace, which also marks the source synced); when
// the pool is deleted it removes the source (with one pool the EPP is then
// not ready). The Pod reconciler applies single-Pod changes in between.
// Both hold one lock while they read the cache and write the store, so a
// resync and a Pod update can never interleave into a stale endpoint.
//
// # Several pools
//
// With several pool names (all in one namespace and group) each pool is
// followed on its own: its endpoints are named "<pool>/<pod>-rank-<i>" and
// reported under the source SourceName+"/"+pool, so that deleting one pool
// clears only its endpoints while the others keep serving. A Pod selected
// by two pools gives one endpoint per pool: it is scraped and tracked once
// per pool, as two endpoints at the same address. A Pod change is applied
// to every pool, so a relabelled Pod leaves one pool and joins another.
// The cache then holds every InferencePool of the namespace (a field
// selector names only one) and the reconciler ignores those not served.
// The store is ready once any pool has synced.
//
// # Pools found by their picker
//
// With a picker service (Options.PickerService) no pool is named up front:
// the EPP serves every InferencePool of the namespace whose
// spec.endpointPickerRef names that Service (kind Service or unset, core
// group). A pool starts being served when it is created or edited to name
// the Service, and stops when it is deleted or edited to name another
// picker: its source is removed and its members forgotten. Each change is
// logged with the pool and the reason. Endpoints are named and reported as
// with several pools ("<pool>/<pod>-rank-<i>", source SourceName+"/"+pool)
// even while only one pool is served, so that names do not change as pools
// come and go. The store is ready once any served pool has synced, and not
// ready while no pool names the Service.
//
// # Objectives and rewrites
//
// InferenceObjective and InferenceModelRewrite are read from GIE's
// inference.networking.x-k8s.io/v1alpha2 group and from llm-d's llm-d.ai/
// v1alpha2 group, each only when its CRD is installed (checked once at
// Setup). An object counts for the pool its poolRef names, if this EPP
// serves it, and is ignored otherwise; Setup returns the pools' Lookups
// (PoolLookups.Of). With a picker service any pool may come to be served,
// so an object is kept for the pool it names whether or not that pool is
// served yet: objectives and rewrites may arrive before or after their
// pool. One watch per kind and group feeds every pool. When both groups
// hold an answer, llm-d's wins.
//
// # Replica peers
//
// With replica sync (SetupPeers), the EndpointSlices of the EPP's own peer
// Service give the addresses of the other replicas, on the port named
// replica-sync; the sync layer recognises and skips itself.
//
// All reconcilers run on every replica (they do not need leader election),
// so a standby EPP keeps a warm datastore and can take over at once.
package controller
