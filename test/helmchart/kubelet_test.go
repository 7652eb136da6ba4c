package helmchart

import (
	"cmp"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/openepp/openepp/test/policy"
)

// kubelet plays the part of a node for one pod of a rendered Deployment:
// it resolves the container's environment (values, downward API), expands
// $(VAR) in args as Kubernetes does, and lays out the ConfigMap, Secret and
// emptyDir volumes under a temporary root, rewriting the mount paths in the
// args to point there. What it does not know how to do fails the test.
type kubelet struct {
	namespace, podName, nodeName, podIP string
	// objs are the rendered objects (the ConfigMaps the pod mounts).
	objs []*unstructured.Unstructured
	// secrets are the Secrets the user created before installing, by name.
	secrets map[string]map[string][]byte
}

// container is what the EPP process is started with.
type container struct {
	args []string
	env  map[string]string
}

func (k kubelet) run(t *testing.T, dep *appsv1.Deployment, name string) container {
	t.Helper()
	c := policy.Container(t, dep, name)
	meta := dep.Spec.Template.ObjectMeta
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expand(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = k.field(t, e.ValueFrom.FieldRef.FieldPath, meta.Annotations, meta.Labels)
		default:
			t.Fatalf("env %s: only values and fieldRefs are emulated", e.Name)
		}
	}
	root := t.TempDir()
	mounts := slices.Clone(c.VolumeMounts)
	slices.SortFunc(mounts, func(a, b corev1.VolumeMount) int { return cmp.Compare(len(b.MountPath), len(a.MountPath)) })
	for _, m := range mounts {
		k.mount(t, dep.Spec.Template.Spec.Volumes, m, filepath.Join(root, m.MountPath))
	}
	out := container{env: env}
	for _, a := range c.Args {
		a = expand(a, env)
		for _, m := range mounts { // the deepest mount holding the path
			if b := rebase(a, m.MountPath, filepath.Join(root, m.MountPath)); b != a {
				a = b
				break
			}
		}
		out.args = append(out.args, a)
	}
	return out
}

// field resolves a downward-API fieldRef.
func (k kubelet) field(t *testing.T, path string, annotations, labels map[string]string) string {
	t.Helper()
	if m := regexp.MustCompile(`^metadata\.(annotations|labels)\['(.+)'\]$`).FindStringSubmatch(path); m != nil {
		if m[1] == "annotations" {
			return annotations[m[2]]
		}
		return labels[m[2]]
	}
	switch path {
	case "metadata.namespace":
		return k.namespace
	case "metadata.name":
		return k.podName
	case "spec.nodeName":
		return k.nodeName
	case "status.podIP":
		return k.podIP
	}
	t.Fatalf("fieldRef %q is not emulated", path)
	return ""
}

// mount writes the volume behind m into dir.
func (k kubelet) mount(t *testing.T, volumes []corev1.Volume, m corev1.VolumeMount, dir string) {
	t.Helper()
	i := slices.IndexFunc(volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
	if i < 0 {
		t.Fatalf("volumeMount %s names no volume", m.Name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	switch v := volumes[i]; {
	case v.EmptyDir != nil:
	case v.ConfigMap != nil:
		cm := policy.Typed[corev1.ConfigMap](t, find(t, k.objs, "ConfigMap", v.ConfigMap.Name))
		for key, val := range cm.Data {
			files[key] = []byte(val)
		}
	case v.Secret != nil:
		data, ok := k.secrets[v.Secret.SecretName]
		if !ok {
			t.Fatalf("the pod mounts Secret %s, which the test did not create", v.Secret.SecretName)
		}
		for key, val := range data {
			files[key] = val
		}
		if len(v.Secret.Items) > 0 {
			files = map[string][]byte{}
			for _, it := range v.Secret.Items {
				files[it.Path] = data[it.Key]
			}
		}
	default:
		t.Fatalf("volume %s: only emptyDir, ConfigMap and Secret volumes are emulated", v.Name)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// expand replaces $(VAR) with VAR's value when VAR is defined, keeps
// undefined references, and turns $$ into $, as Kubernetes does for args
// and env values.
func expand(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if end := strings.IndexByte(s[i:], ')'); end > 0 {
				if v, ok := env[s[i+2:i+end]]; ok {
					b.WriteString(v)
					i += end
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// rebase points a path inside mount (as the whole arg or after "=") at dir.
func rebase(arg, mount, dir string) string {
	name, val, ok := strings.Cut(arg, "=")
	if ok && (val == mount || strings.HasPrefix(val, mount+"/")) {
		return name + "=" + dir + strings.TrimPrefix(val, mount)
	}
	if arg == mount || strings.HasPrefix(arg, mount+"/") {
		return dir + strings.TrimPrefix(arg, mount)
	}
	return arg
}

func TestExpandAsKubernetes(t *testing.T) {
	t.Parallel()
	env := map[string]string{"A": "1", "B": "x"}
	for in, want := range map[string]string{
		"--a=$(A)": "--a=1", "$(A)$(B)": "1x", "$(C)": "$(C)", "$$(A)": "$(A)", "a$": "a$", "$(A": "$(A",
	} {
		if got := expand(in, env); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}
