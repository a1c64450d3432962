package storetest

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

var timeType = reflect.TypeFor[time.Time]()

// assertRecord reports every field in which the record got differs from
// want (both pointers to the same struct type); what names the record.
// Times are compared as instants (a backend may return another location or
// drop the monotonic reading), byte slices by content (nil equals empty).
func assertRecord[R any](t *testing.T, what string, got, want *R) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s is nil", what)
	}
	diffs := differingFields(got, want)
	if len(diffs) > 0 {
		t.Errorf("%s differs in %s:\n got %+v\nwant %+v", what, strings.Join(diffs, ", "), *got, *want)
	}
}

// differingFields names the fields in which *got and *want differ, by the
// rules of assertRecord.
func differingFields[R any](got, want *R) []string {
	g, w := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	var diffs []string
	for i := range g.NumField() {
		gf, wf := g.Field(i), w.Field(i)
		var same bool
		switch {
		case gf.Type() == timeType:
			same = gf.Interface().(time.Time).Equal(wf.Interface().(time.Time))
		case gf.Kind() == reflect.Slice && gf.Type().Elem().Kind() == reflect.Uint8:
			same = bytes.Equal(gf.Bytes(), wf.Bytes())
		default:
			same = reflect.DeepEqual(gf.Interface(), wf.Interface())
		}
		if !same {
			diffs = append(diffs, g.Type().Field(i).Name)
		}
	}
	return diffs
}

// assertToken reports every field in which got differs from want.
func assertToken(t *testing.T, got, want *store.Token) {
	t.Helper()
	assertRecord(t, "token", got, want)
}

// assertCode reports every field in which got differs from want.
func assertCode(t *testing.T, got, want *store.Code) {
	t.Helper()
	assertRecord(t, "code", got, want)
}

// assertFamily reports every field in which got differs from want.
func assertFamily(t *testing.T, got, want *store.Family) {
	t.Helper()
	assertRecord(t, "family", got, want)
}

// assertEnrollment reports every field in which got differs from want.
func assertEnrollment(t *testing.T, got, want *store.Enrollment) {
	t.Helper()
	assertRecord(t, "enrollment", got, want)
}
