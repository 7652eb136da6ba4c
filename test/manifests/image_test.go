package manifests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dockerfile is the parts of the repository's Dockerfile the manifests
// depend on: its final stage's user, ports and entrypoint, and how the
// binary is built.
type dockerfile struct {
	user       string
	expose     []int
	entrypoint []string
	build      string // the RUN line that builds the EPP
	finalBase  string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var d dockerfile
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			d.finalBase = strings.Fields(rest)[0]
			d.user, d.expose, d.entrypoint = "", nil, nil // a new stage
		case "USER":
			d.user = rest
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				n, err := strconv.Atoi(p)
				if err != nil {
					t.Fatalf("EXPOSE %q: %v", p, err)
				}
				d.expose = append(d.expose, n)
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s is not the exec form: %v", rest, err)
			}
		case "RUN":
			if strings.Contains(rest, "./cmd/epp") {
				d.build = rest
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestImageMatchesTheDeployment: the image runs as the UID/GID the pod
// demands (runAsNonRoot would refuse a root image; a different UID would
// only show at runtime), exposes the container's ports, and its entrypoint
// is the EPP, which the Deployment's args are passed to.
func TestImageMatchesTheDeployment(t *testing.T) {
	t.Parallel()
	d := readDockerfile(t)
	spec := eppDeployment(t).Spec.Template.Spec
	sc := spec.SecurityContext
	if sc == nil || sc.RunAsUser == nil || sc.RunAsGroup == nil {
		t.Fatal("EPP pod sets no runAsUser/runAsGroup")
	}
	if want := fmt.Sprintf("%d:%d", *sc.RunAsUser, *sc.RunAsGroup); d.user != want {
		t.Errorf("Dockerfile USER %q, the Deployment runs as %s", d.user, want)
	}
	c := eppContainer(t)
	var ports []int
	for _, p := range c.Ports {
		ports = append(ports, int(p.ContainerPort))
	}
	slices.Sort(ports)
	slices.Sort(d.expose)
	if !slices.Equal(ports, d.expose) {
		t.Errorf("Dockerfile EXPOSE %v, container ports %v", d.expose, ports)
	}
	if !slices.Equal(d.entrypoint, []string{"/epp"}) || len(c.Command) > 0 {
		t.Errorf("entrypoint %v with container command %v: the Deployment's args must reach /epp", d.entrypoint, c.Command)
	}
	// distroless/static has no C library: the binary must not need one.
	if !strings.Contains(d.build, "CGO_ENABLED=0") || !strings.Contains(d.finalBase, "static") {
		t.Errorf("the EPP is built with %q onto %s; a static base needs CGO_ENABLED=0", d.build, d.finalBase)
	}
}
