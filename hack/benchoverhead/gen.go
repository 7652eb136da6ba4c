package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/loadgen"
)

// job is one load run, sent by the orchestrator to the generator as a JSON
// line on its stdin.
type job struct {
	// Probe asks for single exchanges until one succeeds (readiness), at
	// most Duration; the other fields but PromptBytes are then unused.
	Probe       bool          `json:"probe,omitempty"`
	Rate        float64       `json:"rate"`
	Concurrency int           `json:"concurrency"`
	Duration    time.Duration `json:"duration"`
	MaxRequests int           `json:"max_requests"`
	PromptBytes int           `json:"prompt_bytes"`
	Seed        uint64        `json:"seed"`
}

// jobResult is the generator's answer, one JSON line on its stdout.
type jobResult struct {
	Result loadgen.Result `json:"result"`
	Err    string         `json:"error,omitempty"`
}

// genMain is the load generator process: it dials the ext_proc server,
// then runs the jobs read from stdin one at a time until stdin closes.
func genMain(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	target := fs.String("target", "", "ext_proc server address (host:port)")
	useTLS := fs.Bool("tls", false, "dial with TLS (any certificate accepted, as Envoy with an empty validation context)")
	conns := fs.Int("conns", 1, "gRPC connections (Envoy opens one per worker thread)")
	chunk := fs.Int("chunk", extproc.DefaultChunkSize, "request body chunk size in bytes")
	response := fs.String("response", responseFull, "response phase: full (headers + one body chunk) or none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" || *conns < 1 || *chunk < 1 || (*response != responseFull && *response != responseNone) {
		return fmt.Errorf("gen: need --target, --conns >= 1, --chunk >= 1 and --response full|none")
	}
	opt := extproc.WithPlaintext()
	if *useTLS {
		opt = extproc.WithInsecureSkipVerify()
	}
	ex := &exchanger{response: *response, chunk: *chunk, reply: newReply(), bodies: map[int][][]byte{},
		prefix: fmt.Sprintf("bench-%d-", os.Getpid())}
	for range *conns {
		c, err := extproc.Dial(ctx, *target, opt)
		if err != nil {
			return fmt.Errorf("gen: %w", err)
		}
		defer c.Close()
		ex.clients = append(ex.clients, c)
	}
	return serveJobs(ctx, ex, stdin, stdout)
}

func serveJobs(ctx context.Context, ex *exchanger, stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewScanner(stdin)
	out := json.NewEncoder(stdout)
	for in.Scan() {
		var j job
		var res jobResult
		if err := json.Unmarshal(in.Bytes(), &j); err != nil {
			res.Err = fmt.Sprintf("bad job: %v", err)
		} else if r, err := runJob(ctx, ex, j); err != nil {
			res.Err = err.Error()
		} else {
			res.Result = r
		}
		if err := out.Encode(res); err != nil {
			return fmt.Errorf("gen: write result: %w", err)
		}
	}
	if err := in.Err(); err != nil {
		return fmt.Errorf("gen: read jobs: %w", err)
	}
	return nil
}

func runJob(ctx context.Context, ex *exchanger, j job) (loadgen.Result, error) {
	if j.PromptBytes < 1 {
		return loadgen.Result{}, fmt.Errorf("prompt_bytes must be >= 1, got %d", j.PromptBytes)
	}
	ex.bodiesFor(j.PromptBytes)
	if j.Probe {
		return loadgen.Result{}, probe(ctx, ex, j)
	}
	// Collect now, outside the measurement: with GOGC=off (genGC) the run
	// then allocates into a clean heap and never pauses for a collection.
	runtime.GC()
	o := loadgen.Options{Rate: j.Rate, Concurrency: j.Concurrency, Duration: j.Duration, MaxRequests: j.MaxRequests, Seed: j.Seed}
	return loadgen.Run(ctx, o, func(ctx context.Context, seq int) (time.Time, error) {
		return ex.exchange(ctx, seq, j.PromptBytes)
	})
}

// probe retries one exchange until it succeeds or j.Duration passes.
func probe(ctx context.Context, ex *exchanger, j job) error {
	deadline := time.Now().Add(j.Duration)
	var err error
	for i := 0; time.Now().Before(deadline); i++ {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = ex.exchange(rctx, i, j.PromptBytes)
		cancel()
		if err == nil {
			return nil
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	return errors.Join(errors.New("server not ready"), err)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
