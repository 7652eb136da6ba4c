package config

import (
	"errors"
	"fmt"
	"os"
)

// Source is where the configuration comes from: a file (--config-file,
// watched and reloaded), inline text (--config-text), or neither, meaning
// DefaultText.
type Source struct {
	File string
	Text string
}

// NewSource returns the source for the two flags, which are mutually
// exclusive.
func NewSource(file, text string) (Source, error) {
	if file != "" && text != "" {
		return Source{}, errors.New("config source: --config-file and --config-text are mutually exclusive; set one")
	}
	return Source{File: file, Text: text}, nil
}

// Read returns the raw configuration.
func (s Source) Read() ([]byte, error) {
	switch {
	case s.File != "":
		data, err := os.ReadFile(s.File)
		if err != nil {
			return nil, fmt.Errorf("read config file: %w", err)
		}
		return data, nil
	case s.Text != "":
		return []byte(s.Text), nil
	default:
		return []byte(DefaultText), nil
	}
}

// Load reads and loads the configuration.
func (s Source) Load() (*Config, error) {
	data, err := s.Read()
	if err != nil {
		return nil, err
	}
	cfg, err := Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	return cfg, nil
}

// Watchable reports whether the configuration can change while running.
func (s Source) Watchable() bool { return s.File != "" }

// String describes the source for logs and errors.
func (s Source) String() string {
	switch {
	case s.File != "":
		return fmt.Sprintf("config file %q", s.File)
	case s.Text != "":
		return "--config-text"
	default:
		return "built-in default config"
	}
}
