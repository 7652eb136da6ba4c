package epp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/modelrewrite"
	"github.com/openepp/openepp/pkg/objectives"
	"github.com/openepp/openepp/pkg/server"
)

// policyFiles loads the policies of an EPP without InferencePools:
// --objectives-file (every pool's objectives) and --model-rewrites-file
// (with several pools, each rule applies to the pool its poolRef names).
func (a *app) policyFiles(opts *server.Options, reg prometheus.Registerer) error {
	f := a.flags
	if f.ObjectivesFile != "" {
		objs, err := objectives.NewFile(f.ObjectivesFile, a.log.WithName("objectives"), reg)
		if err != nil {
			return fmt.Errorf("--objectives-file: %w", err)
		}
		opts.Objectives = objs
		a.background = append(a.background, objs)
	}
	if f.ModelRewritesFile == "" {
		return nil
	}
	rewrites, err := modelrewrite.NewFile(f.ModelRewritesFile, a.log.WithName("model-rewrites"), reg)
	if err != nil {
		return fmt.Errorf("--model-rewrites-file: %w", err)
	}
	a.background = append(a.background, rewrites)
	opts.Rewrites = rewrites
	if a.severalPools() {
		objs := opts.Objectives
		opts.PoolPolicies = func(pool string) (server.Objectives, server.Rewrites) { return objs, rewrites.Of(pool) }
	}
	return nil
}
