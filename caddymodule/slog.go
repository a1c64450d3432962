package caddymodule

import (
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// slogOf adapts Caddy's zap logger for the core packages that take slog.
func slogOf(l *zap.Logger) *slog.Logger { return slog.New(zapslog.NewHandler(l.Core())) }
