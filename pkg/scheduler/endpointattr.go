package scheduler

import (
	"errors"
	"fmt"
	"strings"

	"github.com/openepp/openepp/pkg/endpoint"
)

// AttributeDeriver is a data-layer plugin whose endpoint attributes are
// derived from the endpoint when read instead of stored on it
// (label-producer reads Pod labels). Nothing is copied, so nothing can lag:
// an endpoint's spec never changes, the datastore replaces the
// *endpoint.Endpoint when its pod's labels do, and a read always sees the
// current pod. Consumers configured with producer: <the deriver's instance
// name> read its attributes through NumberAttr and StringAttr.
//
// NumberAttribute and StringAttribute are called while a config is built,
// once per consumer; they return the reader of attribute name, or an error
// saying why the plugin publishes no such attribute of that kind. The
// readers are called for every candidate of every request, concurrently:
// they must be cheap and must not modify the endpoint.
type AttributeDeriver interface {
	Plugin
	NumberAttribute(name string) (func(*endpoint.Endpoint) (float64, bool), error)
	StringAttribute(name string) (func(*endpoint.Endpoint) (string, bool), error)
}

// ErrNotPublished means no configured plugin publishes the attribute a
// consumer reads; every endpoint then lacks it.
var ErrNotPublished = errors.New("no configured plugin publishes it")

// NumberAttr is a numeric endpoint attribute as a plugin configured with an
// attribute name and producer reads it (endpoint-attribute-filter and
// -scorer): the value stored under endpoint.ConfiguredAttributeKey, or,
// once Resolve finds that producer names an AttributeDeriver of the
// config, the value it derives.
type NumberAttr struct {
	name, producer string
	key            string
	derived        func(*endpoint.Endpoint) (float64, bool)
}

// NewNumberAttr validates name and producer (see
// endpoint.ConfiguredAttributeKey) and returns the attribute.
func NewNumberAttr(name string, producer *string) (NumberAttr, error) {
	key, err := endpoint.ConfiguredAttributeKey(name, producer)
	if err != nil {
		return NumberAttr{}, err
	}
	a := NumberAttr{name: name, key: key}
	if producer != nil {
		a.producer = *producer
	}
	return a, nil
}

// Resolve reads through the deriver producer names, if it names one; a
// deriver that does not publish the attribute is a config error, since no
// other plugin publishes in its namespace.
func (a *NumberAttr) Resolve(h *Handle) error {
	d, ok := deriver(h, a.producer)
	if !ok {
		return nil
	}
	read, err := d.NumberAttribute(a.name)
	if err != nil {
		return fmt.Errorf("producer %q (%s): %w", a.producer, d.TypedName().Type, err)
	}
	a.derived = read
	return nil
}

// Read returns e's value and whether e has the attribute.
func (a *NumberAttr) Read(e *endpoint.Endpoint) (float64, bool) {
	if a.derived != nil {
		return a.derived(e)
	}
	return e.Attribute(a.key)
}

// StringAttr is a string endpoint attribute as a plugin configured with an
// attribute name and producer reads it (endpoint-attribute-weight-scorer).
// Only AttributeDerivers publish string attributes: until Resolve finds
// one, every endpoint lacks it.
type StringAttr struct {
	name     string
	producer *string
	read     func(*endpoint.Endpoint) (string, bool)
}

// NewStringAttr returns the attribute name published by producer; a nil
// producer means the config's only AttributeDeriver (llm-d's older
// configs name none).
func NewStringAttr(name string, producer *string) (StringAttr, error) {
	if strings.TrimSpace(name) == "" {
		return StringAttr{}, errors.New("required")
	}
	return StringAttr{name: name, producer: producer}, nil
}

// Resolve finds the deriver that publishes the attribute. Without a
// producer it is an error unless the config has exactly one deriver. The
// error wraps ErrNotPublished when nothing publishes it: consumers may take
// that as a warning, the attribute then missing everywhere.
func (a *StringAttr) Resolve(h *Handle) error {
	a.read = nil
	producer := ""
	if a.producer != nil {
		producer = *a.producer
	} else {
		var found []string
		for _, p := range h.Plugins() {
			if _, ok := p.(AttributeDeriver); ok {
				found = append(found, p.TypedName().Name)
			}
		}
		switch len(found) {
		case 0:
			return fmt.Errorf("producer: required: the config has no label-producer (or other plugin deriving endpoint attributes) to read %q from", a.name)
		case 1:
		default:
			return fmt.Errorf("producer: required: the config has %d plugins deriving endpoint attributes (%s); name the one that publishes %q",
				len(found), strings.Join(found, ", "), a.name)
		}
		producer = found[0]
	}
	d, ok := deriver(h, producer)
	if !ok {
		return fmt.Errorf("string attribute %q of producer %q: %w", a.name, producer, ErrNotPublished)
	}
	read, err := d.StringAttribute(a.name)
	if err != nil {
		return fmt.Errorf("producer %q (%s): %w: %w", producer, d.TypedName().Type, ErrNotPublished, err)
	}
	a.read = read
	return nil
}

// Read returns e's value and whether e has the attribute.
func (a *StringAttr) Read(e *endpoint.Endpoint) (string, bool) {
	if a.read == nil {
		return "", false
	}
	return a.read(e)
}

// deriver returns the AttributeDeriver called name in h's configuration.
func deriver(h *Handle, name string) (AttributeDeriver, bool) {
	if h == nil || name == "" {
		return nil, false
	}
	p, ok := h.Plugin(name)
	if !ok {
		return nil, false
	}
	d, ok := p.(AttributeDeriver)
	return d, ok
}
