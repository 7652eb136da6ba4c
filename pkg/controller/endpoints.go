package controller

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/openepp/openepp/pkg/endpoint"
)

// Annotations restricting which target ports of a Pod are active, as a
// comma-separated port list. llm-d's name is read first; GIE's is the
// fallback (reference §10).
const (
	ActivePortsAnnotation    = "llm-d.ai/active-ports"
	GIEActivePortsAnnotation = "inference.networking.k8s.io/active-ports"
)

const (
	maxTargetPorts = 8
	rankSeparator  = "-rank-"
)

// poolSpec is what turns Pods into endpoints: the selector and the ports,
// whose index is the rank.
type poolSpec struct {
	selector labels.Selector
	ports    []int
}

// naming sets one pool's endpoints apart from another's: the pool they
// carry in Spec.Pool (empty in selector mode) and the prefix of their
// names ("<pool>/" when the EPP serves several pools, else empty).
type naming struct{ pool, prefix string }

// rank is the endpoint name of a Pod's i-th target port.
func (n naming) rank(pod string, i int) string {
	return n.prefix + pod + rankSeparator + strconv.Itoa(i)
}

// podEligible reports whether pod should be routed to at all: Ready, with
// an IP, not being deleted, matching the selector.
func podEligible(pod *corev1.Pod, spec *poolSpec) bool {
	if pod.DeletionTimestamp != nil || pod.Status.PodIP == "" {
		return false
	}
	return spec.selector.Matches(labels.Set(pod.Labels)) && podReady(pod)
}

// podEndpoints returns the endpoints pod contributes under spec (none when
// it is not eligible), named by n and indexed like spec.ports: a nil entry
// is an inactive rank. Every rank carries the pod's node, empty until it is
// scheduled. The error reports an unusable active-ports annotation; the
// valid part of it still applies.
func podEndpoints(pod *corev1.Pod, spec *poolSpec, n naming) ([]*endpoint.Spec, error) {
	out := make([]*endpoint.Spec, len(spec.ports))
	if !podEligible(pod, spec) {
		return out, nil
	}
	active, err := activePorts(pod.Annotations)
	for i, port := range spec.ports {
		if active != nil && !active[port] {
			continue
		}
		out[i] = &endpoint.Spec{
			Name:        n.rank(pod.Name, i),
			Namespace:   pod.Namespace,
			Pod:         pod.Name,
			Pool:        n.pool,
			Node:        pod.Spec.NodeName,
			NodeAddress: pod.Status.HostIP,
			Address:     pod.Status.PodIP,
			Port:        port,
			Labels:      maps.Clone(pod.Labels),
		}
	}
	return out, err
}

// activePorts parses the active-ports annotation; nil means every target
// port is active. Malformed entries are reported and skipped; if none is
// valid the annotation is ignored, so a typo never silently empties a Pod.
func activePorts(ann map[string]string) (map[int]bool, error) {
	key := ActivePortsAnnotation
	raw, ok := ann[key]
	if !ok || strings.TrimSpace(raw) == "" {
		key = GIEActivePortsAnnotation
		raw = ann[key]
	}
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	set := map[int]bool{}
	var errs []error
	for _, f := range strings.Split(raw, ",") {
		f = strings.TrimSpace(f)
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("%q is not a port number (1-65535)", f))
			continue
		}
		set[p] = true
	}
	if err := errors.Join(errs...); err != nil {
		err = fmt.Errorf("annotation %s=%q: %w", key, raw, err)
		if len(set) == 0 {
			return nil, fmt.Errorf("%w; annotation ignored", err)
		}
		return set, err
	}
	return set, nil
}

// ValidateTargetPorts checks a target-port list as the InferencePool CRD
// does: 1 to 8 unique ports in 1..65535.
func ValidateTargetPorts(ports []int) error {
	if len(ports) == 0 || len(ports) > maxTargetPorts {
		return fmt.Errorf("need 1 to %d target ports, got %d", maxTargetPorts, len(ports))
	}
	for i, p := range ports {
		if p < 1 || p > 65535 {
			return fmt.Errorf("target port %d is out of range 1-65535", p)
		}
		if slices.Contains(ports[:i], p) {
			return fmt.Errorf("target port %d is listed twice", p)
		}
	}
	return nil
}
