package endpoint

// DerivedKey names a value computed from an endpoint's spec (a plugin's
// reading of its labels, say) and kept on the endpoint by Derive. Declare
// one per kind of value at package level; keys are told apart by address.
type DerivedKey[T any] struct{ _ byte } // not zero-sized: distinct keys, distinct addresses

// derivedValue is one key's value on an endpoint.
type derivedValue struct{ key, value any }

// Derive returns k's value for e, computing it with compute on first use.
// An endpoint's spec never changes (the datastore makes a new *Endpoint
// when it does), so a value read from the labels is computed once per
// endpoint rather than on every request. compute may run more than once
// when called concurrently; one result is kept.
func Derive[T any](e *Endpoint, k *DerivedKey[T], compute func(*Endpoint) T) T {
	for {
		old := e.derived.Load()
		if old != nil {
			for _, d := range *old {
				if d.key == any(k) {
					return d.value.(T)
				}
			}
		}
		v := compute(e)
		var next []derivedValue
		if old != nil {
			next = append(make([]derivedValue, 0, len(*old)+1), *old...)
		}
		next = append(next, derivedValue{key: k, value: v})
		if e.derived.CompareAndSwap(old, &next) {
			return v
		}
	}
}
