// Package topology is llm-d's topology-aware pairing for disaggregated
// serving: topology-extractor places each endpoint on a host, rack, zone
// and region, and topology-affinity-scorer / topology-affinity-filter
// prefer or require, in one stage's profile, endpoints close to the peer an
// earlier stage picked (scheduler.PeerEndpoint, set by
// disagg-profile-handler), since a KV-cache transfer within a host (NVLink)
// is one or two orders of magnitude faster than across a rack or a zone.
package topology
