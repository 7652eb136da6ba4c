package epp

import (
	"flag"
	"testing"

	"github.com/openepp/openepp/pkg/metrics"
)

// TestDeprecatedScrapeFlags checks that upstream's deprecated scrape flags
// reach the scraper's options.
func TestDeprecatedScrapeFlags(t *testing.T) {
	t.Parallel()
	var c compatFlags
	fs := flag.NewFlagSet("epp", flag.ContinueOnError)
	c.bind(fs)
	if err := fs.Parse([]string{"--model-server-metrics-scheme=https", "--model-server-metrics-path=/prom",
		"--model-server-metrics-port=8200", "--model-server-metrics-https-insecure-skip-verify=false"}); err != nil {
		t.Fatal(err)
	}
	c.record(fs)
	var o metrics.Options
	c.applyScrape(&o)
	if o.Scheme != "https" || o.Path != "/prom" || o.Port != 8200 || o.InsecureSkipVerify == nil || *o.InsecureSkipVerify {
		t.Errorf("options %+v, want https, /prom, port 8200, verifying", o)
	}
}
