package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate allows Events per Per on average, with bursts of up to Burst. The
// zero Rate is off: it limits nothing.
type Rate struct {
	Events int
	Per    time.Duration
	// Burst is the bucket size; 0 means Events.
	Burst int
}

// Enabled reports whether r limits anything.
func (r Rate) Enabled() bool { return r.Events > 0 && r.Per > 0 }

// burst returns the bucket size.
func (r Rate) burst() int {
	if r.Burst > 0 {
		return r.Burst
	}
	return r.Events
}

// String renders r in the syntax ParseRate reads.
func (r Rate) String() string {
	if !r.Enabled() {
		return "off"
	}
	u := "s"
	n := r.Per / time.Second
	switch {
	case r.Per%time.Hour == 0:
		u, n = "h", r.Per/time.Hour
	case r.Per%time.Minute == 0:
		u, n = "m", r.Per/time.Minute
	}
	per := u
	if n != 1 {
		per = strconv.FormatInt(int64(n), 10) + u
	}
	s := strconv.Itoa(r.Events) + "/" + per
	if r.Burst > 0 {
		s += " burst " + strconv.Itoa(r.Burst)
	}
	return s
}

// ErrSyntax is wrapped by every ParseRate error.
var ErrSyntax = errors.New("rate syntax")

// ParseRate reads "off" or "<events>/<period> [burst <n>]", where period is
// s, m or h, optionally preceded by a count (60/m, 1000/h, 10/30s).
func ParseRate(s string) (Rate, error) {
	f := strings.Fields(s)
	if len(f) == 1 && f[0] == "off" {
		return Rate{}, nil
	}
	bad := func(why string) (Rate, error) {
		return Rate{}, fmt.Errorf("%w: %q: %s (want off or <events>/<s|m|h> [burst <n>])", ErrSyntax, s, why)
	}
	if len(f) != 1 && len(f) != 3 {
		return bad("wrong number of words")
	}
	ev, per, ok := strings.Cut(f[0], "/")
	if !ok {
		return bad("no /")
	}
	n, err := strconv.Atoi(ev)
	if err != nil || n <= 0 || n > 1e9 {
		return bad("events must be a positive integer")
	}
	r := Rate{Events: n}
	if per == "" {
		return bad("no period")
	}
	unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour}[per[len(per)-1]]
	if unit == 0 {
		return bad("period unit must be s, m or h")
	}
	k := 1
	if num := per[:len(per)-1]; num != "" {
		if k, err = strconv.Atoi(num); err != nil || k <= 0 || k > 1e6 {
			return bad("period count must be a positive integer")
		}
	}
	r.Per = time.Duration(k) * unit
	if len(f) == 3 {
		if f[1] != "burst" {
			return bad("expected burst")
		}
		if r.Burst, err = strconv.Atoi(f[2]); err != nil || r.Burst <= 0 || r.Burst > 1e9 {
			return bad("burst must be a positive integer")
		}
	}
	return r, nil
}

// Seconds renders d as a Retry-After value: whole seconds, rounded up, at
// least 1.
func Seconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
