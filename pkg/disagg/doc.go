// Package disagg is disaggregated serving as llm-d does it: one pool whose
// model servers run different stages of a request (encode, prefill, decode),
// told apart by the llm-d.ai/role label (see the role filters in package
// filters).
//
// The disagg-profile-handler always runs the decode profile, whose pick is
// the destination the proxy sends the request to. Deciders (prefix-based,
// always, multimodal) then choose whether the request's prefill and encode
// run elsewhere; when they do, the prefill and encode profiles pick those
// endpoints, and PreRequest names them in the x-prefiller-host-port and
// x-encoder-hosts-ports request headers for the decode server's sidecar,
// which runs the stages and pulls the KV cache. A stage that is skipped
// strips the header, so a client cannot name a prefiller itself.
//
// Where llm-d is silent or known to misbehave, OpenEPP:
//   - falls back to decode-only when a stage's profile finds no endpoint, and
//     counts it (openepp_disagg_stage_skipped_total) instead of doing so
//     silently (llm-d #2427);
//   - with maxPrefillQueue, keeps the prefill local while the prefill pick's
//     queue is longer than the decode pick's by more than that margin: a
//     fleet short of prefill capacity otherwise queues prompts there for
//     seconds (the fleet simulation's P/D study measures both);
//   - runs decode-only when the prefill pick is the decode pick itself (a
//     prefill-decode pod picked for both): sending the prefill to oneself
//     only adds a KV transfer.
package disagg
