// Package config loads the upstream EndpointPickerConfig file (GIE's
// inference.networking.x-k8s.io/v1alpha1 and llm-d's llm-d.ai/v1alpha1) and
// turns it into a running scheduler. The pipeline has four stages:
//
//  1. Decode (Load): YAML → JSON (duplicate keys rejected) → a walk of the
//     JSON tree against the schema that collects every unknown field, wrong
//     type, bad quantity ("10Gi", "1k") and bad duration ("60s") with its
//     path → a strict decode into Config.
//  2. Default (applyDefaults, the only place defaults live): upstream's
//     steps, in upstream's order; see applyDefaults. Steps that depend on
//     what a plugin is (filter, scorer, picker, profile handler) use the
//     kind discovered from the built instance, never its type name.
//  3. Validate: schema rules in Load (names, references, ranges, feature
//     gates); kind rules in Build (one profile handler, profiles holding only
//     filters, scorers and one picker).
//  4. Build: every plugin is built through its factory in the given
//     scheduler.Registry, resolvers are resolved, data sources are handed
//     the extractors dataLayer.sources pairs them with, and the profiles
//     and the scheduler are assembled. A previous Built may be passed to
//     reuse unchanged instances across reloads (a data source whose
//     pairing changed counts as changed).
//
// Every stage reports all the problems it finds at once, in an *Error whose
// lines read like `schedulingProfiles[0].plugins[1].weight: must be > 0`.
//
// Compatibility choices: a weight on a non-scorer is ignored with a warning
// (upstream ignores it silently); an unknown feature gate is an error; the
// "parser" (GIE) and "requestHandler.parsers" (llm-d) forms are both
// accepted but not together; default plugins for sections OpenEPP does not
// act on yet (data layer, saturation detector, parser, flow-control
// policies) are skipped with a warning when their type is not registered,
// while a plugin written in the file with an unregistered type is an error.
//
// Source picks --config-file, --config-text or DefaultText, and Watcher
// reloads the file when it changes.
package config
