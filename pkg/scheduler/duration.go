package scheduler

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Duration is a plugin parameter that upstream configs write either as a
// Go time.Duration marshalled to JSON (nanoseconds) or as a Go duration
// string ("2s").
type Duration time.Duration

// UnmarshalJSON accepts nanoseconds or a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		*d = Duration(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want nanoseconds or a Go duration, got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
