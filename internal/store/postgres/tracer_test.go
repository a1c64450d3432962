package postgres

import (
	"context"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// sqlKey carries a statement from TraceQueryStart to TraceQueryEnd.
type sqlKey struct{}

// tracer records the statements a store runs.
type tracer struct {
	mu       sync.Mutex
	queries  []string
	prepares int
	deletes  []int64 // rows each DELETE affected
}

func (tr *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	tr.mu.Lock()
	tr.queries = append(tr.queries, d.SQL)
	tr.mu.Unlock()
	return context.WithValue(ctx, sqlKey{}, d.SQL)
}

func (tr *tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	sql, _ := ctx.Value(sqlKey{}).(string)
	if d.Err == nil && strings.HasPrefix(sql, "DELETE") {
		tr.mu.Lock()
		tr.deletes = append(tr.deletes, d.CommandTag.RowsAffected())
		tr.mu.Unlock()
	}
}

func (tr *tracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	tr.mu.Lock()
	tr.prepares++
	tr.mu.Unlock()
	return ctx
}

func (tr *tracer) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// reset forgets what was recorded.
func (tr *tracer) reset() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.queries, tr.prepares, tr.deletes = nil, 0, nil
}

// counts returns the statements and preparations recorded.
func (tr *tracer) counts() (queries []string, prepares int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.queries...), tr.prepares
}
