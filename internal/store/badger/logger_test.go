package badger

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestBadgerLogger(t *testing.T) {
	tests := []struct {
		name string
		log  func(badgerLogger)
		want string // empty: nothing logged
	}{
		{"error", func(l badgerLogger) { l.Errorf("disk %s\n", "full") }, "level=ERROR msg=\"badger: disk full\""},
		{"warning", func(l badgerLogger) { l.Warningf("slow %d", 3) }, "level=WARN msg=\"badger: slow 3\""},
		{"info", func(l badgerLogger) { l.Infof("replaying") }, ""},
		{"debug", func(l badgerLogger) { l.Debugf("detail") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
			tt.log(badgerLogger{slog.New(h)})
			got := buf.String()
			if tt.want == "" && got != "" {
				t.Fatalf("logged %q, want nothing", got)
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("logged %q, want it to contain %q", got, tt.want)
			}
		})
	}
}
