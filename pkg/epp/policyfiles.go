package epp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/modelrewrite"
	"github.com/openepp/openepp/pkg/objectives"
	"github.com/openepp/openepp/pkg/server"
)

// loadedPolicyFile is a policy file the EPP reloads (/debug/policies).
type loadedPolicyFile struct {
	flag, path string
	rejections func() int64
}

// loadPolicyFiles loads the policies of an EPP without InferencePools,
// --objectives-file and --model-rewrites-file. With several pools each
// object applies to the pool its spec.poolRef names, or to every pool
// without one.
func (a *app) loadPolicyFiles(opts *server.Options, reg prometheus.Registerer) error {
	f := a.flags
	var objs *objectives.File
	var rewrites *modelrewrite.File
	var err error
	if f.ObjectivesFile != "" {
		if objs, err = objectives.NewFile(f.ObjectivesFile, a.log.WithName("objectives"), reg); err != nil {
			return fmt.Errorf("--objectives-file: %w", err)
		}
		opts.Objectives = objs
		a.background = append(a.background, objs)
		a.policyFiles = append(a.policyFiles, loadedPolicyFile{"--objectives-file", f.ObjectivesFile, objs.Rejections})
	}
	if f.ModelRewritesFile != "" {
		if rewrites, err = modelrewrite.NewFile(f.ModelRewritesFile, a.log.WithName("model-rewrites"), reg); err != nil {
			return fmt.Errorf("--model-rewrites-file: %w", err)
		}
		opts.Rewrites = rewrites
		a.background = append(a.background, rewrites)
		a.policyFiles = append(a.policyFiles, loadedPolicyFile{"--model-rewrites-file", f.ModelRewritesFile, rewrites.Rejections})
	}
	if !a.severalPools() || objs == nil && rewrites == nil {
		return nil
	}
	opts.PoolPolicies = func(pool string) (o server.Objectives, r server.Rewrites) {
		if objs != nil {
			o = objs.Of(pool)
		}
		if rewrites != nil {
			r = rewrites.Of(pool)
		}
		return o, r
	}
	return nil
}
