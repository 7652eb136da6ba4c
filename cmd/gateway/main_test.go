package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		want    options
		wantErr string
	}{
		{name: "defaults", want: options{listen: "127.0.0.1:8080", epp: "127.0.0.1:9002", insecureTLS: true}},
		{name: "all set", args: []string{"--listen", ":9", "--epp", "10.0.0.1:9002", "--epp-plaintext", "--request-timeout", "3s", "--fail-open-endpoints", "10.0.0.2:8000", "--v", "1"},
			want: options{listen: ":9", epp: "10.0.0.1:9002", insecureTLS: true, plaintext: true, requestTimeout: 3 * time.Second, failOpen: "10.0.0.2:8000", verbosity: 1}},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "not defined"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
	}
	for _, tc := range tests {
		got, err := parseFlags(tc.args, io.Discard)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(options{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}
