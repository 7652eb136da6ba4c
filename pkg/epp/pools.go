package epp

import (
	"fmt"
	"slices"
	"strings"

	"github.com/openepp/openepp/pkg/discovery"
	"github.com/openepp/openepp/pkg/server"
)

// poolNames are the pools --pool-name names: one, or several separated by
// commas (docs/deploy.md, "Several pools").
func (k *KubeFlags) poolNames() []string {
	if k.PoolName == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(k.PoolName, ",") {
		out = append(out, strings.TrimSpace(p))
	}
	return out
}

// validatePools checks --pool-name's list.
func (k *KubeFlags) validatePools() []error {
	names := k.poolNames()
	var errs []error
	for i, p := range names {
		switch {
		case p == "":
			errs = append(errs, fmt.Errorf("--pool-name %q: empty pool name in the list", k.PoolName))
		case slices.Contains(names[:i], p):
			errs = append(errs, fmt.Errorf("--pool-name %q: pool %q is named twice", k.PoolName, p))
		}
	}
	return errs
}

// declaredPools are the pools the flags name: --pool-name's list, or the
// pools of the endpoints file at start (a broken file is reported when its
// source is added).
func (f *Flags) declaredPools() []string {
	if f.Kube.PoolName != "" {
		return f.Kube.poolNames()
	}
	if f.EndpointsFile != "" {
		pools, _ := filePools(f.EndpointsFile)
		return pools
	}
	return nil
}

// filePools are the pools an endpoints file names (sorted).
func filePools(path string) ([]string, error) {
	specs, err := discovery.LoadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range specs {
		if s.Pool != "" && !slices.Contains(out, s.Pool) {
			out = append(out, s.Pool)
		}
	}
	slices.Sort(out)
	return out, nil
}

// poolRouter gives the server the router (made in build), which resolves
// each request's pool among the declared ones and those the endpoints
// name; the server consults it only once there are several.
func (a *app) poolRouter(opts *server.Options) {
	opts.Pools = a.router
	if a.severalPools() {
		a.log.Info("serving several pools: each request is routed among its pool's endpoints", "pools", a.pools,
			"header", opts.Pools.Header())
	}
}

// severalPools reports whether the EPP may serve several pools: it names
// several, or finds them at run time.
func (a *app) severalPools() bool { return len(a.pools) > 1 || a.flags.Kube.PickerService != "" }

// poolLabel is the inference_pool label of flow control's and eviction's
// series: the one pool, or "" (no pool; with several, each request's pool
// labels its flow-control series).
func (a *app) poolLabel() string {
	if len(a.pools) == 1 {
		return a.pools[0]
	}
	return ""
}
