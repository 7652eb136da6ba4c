package epp

import (
	"flag"
	"fmt"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/enginepriority"
	"github.com/openepp/openepp/pkg/metrics"
	"github.com/openepp/openepp/pkg/server"
)

// enginePriorityFlags choose whether the EPP writes each request's priority
// into its body for the model server's own scheduler (package
// enginepriority).
type enginePriorityFlags struct {
	Mode   string
	Orders string
}

const (
	enginePriorityAuto = "auto"
	enginePriorityOn   = "on"
	enginePriorityOff  = "off"
)

func (e *enginePriorityFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&e.Mode, "engine-priority", enginePriorityAuto,
		"write each request's priority into its body's \"priority\" member for the engine's scheduler (vLLM --scheduling-policy priority, SGLang --enable-priority-scheduling): on, off, or auto (on with an llm-d config file, as llm-d does; off otherwise, as GIE)")
	fs.StringVar(&e.Orders, "engine-priority-order", "",
		"engine=order pairs over the defaults vllm=lower-first,sglang=higher-first (orders: lower-first, higher-first, none), e.g. sglang=lower-first for --schedule-low-priority-values-first")
}

func (e *enginePriorityFlags) validate() []error {
	var errs []error
	switch e.Mode {
	case enginePriorityAuto, enginePriorityOn, enginePriorityOff:
	default:
		errs = append(errs, fmt.Errorf("--engine-priority: %q is not auto, on or off", e.Mode))
	}
	if _, err := enginepriority.ParseOrders(e.Orders); err != nil {
		errs = append(errs, fmt.Errorf("--engine-priority-order: %w", err))
	}
	return errs
}

// writer returns the priority writer for the loaded config, or nil when
// engine priority is off. Engines are named as the metrics scraper names them, so
// an endpoint's priority convention follows its engine-type label.
func (e *enginePriorityFlags) writer(built *config.Built, scrape metrics.Options) *enginepriority.Writer {
	on := e.Mode == enginePriorityOn || (e.Mode == enginePriorityAuto && built.Config.LLMDFlavor())
	if !on {
		return nil
	}
	orders, _ := enginepriority.ParseOrders(e.Orders) // validated with the flags
	return enginepriority.New(metrics.EngineNamer(scrape), orders)
}

// enginePriorityFor is the server's priority writer for built (nil: off),
// logged when on. With auto a reload re-decides: a GIE file swapped for an
// llm-d one turns it on, and back.
func (a *app) enginePriorityFor(built *config.Built) server.EnginePriority {
	w := a.flags.EnginePriority.writer(built, a.scrape)
	if w == nil {
		a.log.Info("engine priority: off", "mode", a.flags.EnginePriority.Mode)
		return nil // not a typed nil: the server tests the interface
	}
	a.log.Info("engine priority: requests carry their priority to the model servers", "orders", w.Describe())
	return w
}
