package epp

import (
	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// newLogger builds the zap-backed logr logger: --v=N enables V(N) logs
// unless --zap-log-level set a level explicitly.
func newLogger(f *Flags) logr.Logger {
	o := f.Zap
	if o.Level == nil {
		o.Level = zapcore.Level(-f.Verbosity)
	}
	if o.StacktraceLevel == nil && !o.Development {
		// Error logs here report conditions (a model server down), not bugs;
		// stack traces would only bury them.
		o.StacktraceLevel = zapcore.DPanicLevel
	}
	return crzap.New(crzap.UseFlagOptions(&o))
}
