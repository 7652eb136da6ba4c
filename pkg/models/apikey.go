package models

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"time"
)

// apiKey is the bearer token of model servers started with an API key
// (vLLM's --api-key), read from a file (a mounted Secret) and read again
// when the file changes, so a rotated key needs no restart.
type apiKey struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	key     string
}

// newAPIKey reads path once, so that a missing or empty file fails the
// config rather than every poll.
func newAPIKey(path string) (*apiKey, error) {
	k := &apiKey{path: path}
	if _, err := k.value(); err != nil {
		return nil, fmt.Errorf("apiKeyFile: %w", err)
	}
	return k, nil
}

// value returns the key, rereading the file when its size or modification
// time changed.
func (k *apiKey) value() (string, error) {
	st, err := os.Stat(k.path)
	if err != nil {
		return "", err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key != "" && st.ModTime().Equal(k.modTime) && st.Size() == k.size {
		return k.key, nil
	}
	data, err := os.ReadFile(k.path)
	if err != nil {
		return "", err
	}
	key := string(bytes.TrimSpace(data))
	if key == "" {
		return "", fmt.Errorf("%s is empty", k.path)
	}
	k.key, k.modTime, k.size = key, st.ModTime(), st.Size()
	return key, nil
}
