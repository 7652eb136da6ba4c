// Package models answers GET /v1/models for the whole pool and keeps
// inference requests away from servers that do not serve their model:
// llm-d's models-data-source, models-data-extractor and models-responder.
//
// The source polls every endpoint's OpenAI model list (GET /v1/models, over
// http or https with the metrics scraper's certificate handling) every
// interval, a new endpoint at once; the extractor parses each answer and
// publishes it on the endpoint (endpoint.Models), where the responder
// reads it.
//
// A poll that fails (refused, timed out, not 200, larger than
// MaxListBytes, not an OpenAI list) is counted by reason in
// openepp_models_poll_errors_total and keeps the endpoint's previous list;
// after dropAfter failures in a row the list is dropped and the endpoint is
// uncollected again, as one never reached. Failures are logged at V(1) when
// an endpoint's reason changes, when its list is dropped and when it
// recovers, not on every poll.
//
// The responder answers GET /v1/models (trailing slash and query allowed)
// with the union of the collected lists, one entry per model ID (from the
// endpoint first by name when servers disagree), sorted by ID. While no
// endpoint's list is collected it lets a model server answer (its own list
// rather than a 503 or an empty one; it also sees the client's credentials,
// which a server started with an API key asks for). Before scheduling it screens every inference request's
// candidates by its target model (see Responder.Screen).
package models
