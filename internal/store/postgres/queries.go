package postgres

import (
	"fmt"
	"strings"
)

// queries are the store's statements with the schema filled in, built
// once by Open (pgx prepares and caches each per connection).
//
// A token or family row is live while purge_after is NULL or after the
// store's clock ($now); a code while purge_after is after it; a login
// state while expires_at is after it. Rows that are not live are treated
// as absent everywhere, purged or not.
type queries struct {
	schema string // the quoted schema

	tokenGet, tokenLock, tokenCreate, tokenUpdate, tokenUpsert        string
	tokensForEnrollment, tokensForFamily, tokensForUser               string
	enrollmentGet, enrollmentLock, enrollmentInsert, enrollmentUpdate string
	enrollmentUpsert, enrollmentsForUser, lookup                      string
	loginPut, loginTake, loginCount                                   string
	codeCreate, codeLock, codeUpdate                                  string
	familyGet, familyLock, familyCreate, familyUpdate, familyUpsert   string
	familiesForUser                                                   string
	secretGet, secretInsert, secretUpsert                             string
	purgeLogin, purgeCodes, purgeTokens, purgeFamilies, size          string

	// Scans, page by page: the first page from its start key
	// inclusive, the next ones after the last key seen.
	tokensFrom, tokensAfter           string
	enrollmentsFrom, enrollmentsAfter string
	familiesFrom, familiesAfter       string
	secretsFrom, secretsAfter         string
}

func newQueries(schema string) queries {
	q := queries{schema: schema}
	x := q.expand
	const tokenCols = "hash, enrollment_id, family_id, iss, sub, expires_at, revoked_at, purge_after, rec"
	const tokenSet = `enrollment_id = EXCLUDED.enrollment_id, family_id = EXCLUDED.family_id, iss = EXCLUDED.iss,
		sub = EXCLUDED.sub, expires_at = EXCLUDED.expires_at, revoked_at = EXCLUDED.revoked_at,
		purge_after = EXCLUDED.purge_after, rec = EXCLUDED.rec`
	// live is the condition that a token or family row is live, the
	// store's clock being parameter n.
	live := func(n int) string { return fmt.Sprintf("(purge_after IS NULL OR purge_after > $%d)", n) }
	// page lists the key and rec of the live rows of table from key $1
	// (op is >= or >), at most $2 of them, live(3) if check is set.
	page := func(table, key, op string, check bool) string {
		cond := key + " " + op + " $1"
		if check {
			cond += " AND " + live(3)
		}
		return x("SELECT " + key + ", rec FROM {s}." + table + " WHERE " + cond + " ORDER BY " + key + " LIMIT $2")
	}

	q.tokenGet = x("SELECT rec FROM {s}.tokens WHERE hash = $1 AND " + live(2))
	q.tokenLock = q.tokenGet + " FOR UPDATE"
	// A row past its retention is absent: a new token may take its place.
	q.tokenCreate = x("INSERT INTO {s}.tokens AS t (" + tokenCols + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)" +
		" ON CONFLICT (hash) DO UPDATE SET " + tokenSet + " WHERE t.purge_after <= $10")
	q.tokenUpdate = x(`UPDATE {s}.tokens SET enrollment_id = $2, family_id = $3, iss = $4, sub = $5,
		expires_at = $6, revoked_at = $7, purge_after = $8, rec = $9 WHERE hash = $1`)
	q.tokenUpsert = x("INSERT INTO {s}.tokens (" + tokenCols + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)" +
		" ON CONFLICT (hash) DO UPDATE SET " + tokenSet)
	q.tokensForEnrollment = x("SELECT hash, rec FROM {s}.tokens WHERE enrollment_id = $1 AND " + live(2) + " ORDER BY hash")
	q.tokensForFamily = x("SELECT hash, rec FROM {s}.tokens WHERE family_id = $1 AND " + live(2) + " ORDER BY hash")
	q.tokensForUser = x("SELECT hash, rec FROM {s}.tokens WHERE iss = $1 AND sub = $2 AND " + live(3) + " ORDER BY hash")
	q.tokensFrom, q.tokensAfter = page("tokens", "hash", ">=", true), page("tokens", "hash", ">", true)

	const enrollmentSet = "iss = EXCLUDED.iss, sub = EXCLUDED.sub, state = EXCLUDED.state, rec = EXCLUDED.rec"
	q.enrollmentGet = x("SELECT rec FROM {s}.enrollments WHERE id = $1")
	q.enrollmentLock = q.enrollmentGet + " FOR UPDATE"
	q.enrollmentInsert = x("INSERT INTO {s}.enrollments (id, iss, sub, state, rec) VALUES ($1, $2, $3, $4, $5)")
	q.enrollmentUpdate = x("UPDATE {s}.enrollments SET iss = $2, sub = $3, state = $4, rec = $5 WHERE id = $1")
	q.enrollmentUpsert = q.enrollmentInsert + " ON CONFLICT (id) DO UPDATE SET " + enrollmentSet
	q.enrollmentsForUser = x("SELECT id, rec FROM {s}.enrollments WHERE iss = $1 AND sub = $2 ORDER BY id")
	q.enrollmentsFrom, q.enrollmentsAfter = page("enrollments", "id", ">=", false), page("enrollments", "id", ">", false)
	// One statement, one snapshot: the enrollment and the live token.
	q.lookup = x(`SELECT (SELECT rec FROM {s}.enrollments WHERE id = $1),
		(SELECT rec FROM {s}.tokens WHERE hash = $2 AND (purge_after IS NULL OR purge_after > $3))`)

	// A state that expired may be replaced; a live one may not.
	q.loginPut = x(`INSERT INTO {s}.login_states AS l (key, expires_at, rec) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at, rec = EXCLUDED.rec WHERE l.expires_at <= $4`)
	q.loginTake = x("DELETE FROM {s}.login_states WHERE key = $1 RETURNING rec")
	q.loginCount = x("SELECT count(*) FROM {s}.login_states WHERE expires_at > $1")

	q.codeCreate = x(`INSERT INTO {s}.codes AS c (hash, expires_at, purge_after, rec) VALUES ($1, $2, $3, $4)
		ON CONFLICT (hash) DO UPDATE SET expires_at = EXCLUDED.expires_at, purge_after = EXCLUDED.purge_after,
		rec = EXCLUDED.rec WHERE c.purge_after <= $5`)
	q.codeLock = x("SELECT rec FROM {s}.codes WHERE hash = $1 AND purge_after > $2 FOR UPDATE")
	q.codeUpdate = x("UPDATE {s}.codes SET expires_at = $2, purge_after = $3, rec = $4 WHERE hash = $1")

	const familyCols = "id, iss, sub, expires_at, revoked_at, purge_after, rec"
	const familySet = `iss = EXCLUDED.iss, sub = EXCLUDED.sub, expires_at = EXCLUDED.expires_at,
		revoked_at = EXCLUDED.revoked_at, purge_after = EXCLUDED.purge_after, rec = EXCLUDED.rec`
	q.familyGet = x("SELECT rec FROM {s}.families WHERE id = $1 AND " + live(2))
	q.familyLock = q.familyGet + " FOR UPDATE"
	q.familyCreate = x("INSERT INTO {s}.families AS f (" + familyCols + ") VALUES ($1, $2, $3, $4, $5, $6, $7)" +
		" ON CONFLICT (id) DO UPDATE SET " + familySet + " WHERE f.purge_after <= $8")
	q.familyUpdate = x(`UPDATE {s}.families SET iss = $2, sub = $3, expires_at = $4, revoked_at = $5,
		purge_after = $6, rec = $7 WHERE id = $1`)
	q.familyUpsert = x("INSERT INTO {s}.families (" + familyCols + ") VALUES ($1, $2, $3, $4, $5, $6, $7)" +
		" ON CONFLICT (id) DO UPDATE SET " + familySet)
	q.familiesForUser = x("SELECT id, rec FROM {s}.families WHERE iss = $1 AND sub = $2 AND " + live(3) + " ORDER BY id")
	q.familiesFrom, q.familiesAfter = page("families", "id", ">=", true), page("families", "id", ">", true)

	q.secretGet = x("SELECT value FROM {s}.secrets WHERE name = $1")
	q.secretInsert = x("INSERT INTO {s}.secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
	q.secretUpsert = x("INSERT INTO {s}.secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value")
	q.secretsFrom = x("SELECT name, value FROM {s}.secrets WHERE name >= $1 ORDER BY name LIMIT $2")
	q.secretsAfter = x("SELECT name, value FROM {s}.secrets WHERE name > $1 ORDER BY name LIMIT $2")

	// Bounded batches: at most $2 rows past their time are picked and
	// locked (skipping rows another transaction holds, say an update
	// that is extending them, and those another purge took), then
	// deleted by ctid, a TID scan. Locked, they cannot change in
	// between.
	purge := func(table, cond string) string {
		return x("DELETE FROM {s}." + table + " WHERE ctid = ANY(ARRAY(SELECT ctid FROM {s}." + table +
			" WHERE " + cond + " LIMIT $2 FOR UPDATE SKIP LOCKED))")
	}
	q.purgeLogin = purge("login_states", "expires_at <= $1")
	q.purgeCodes = purge("codes", "purge_after <= $1")
	q.purgeTokens = purge("tokens", "purge_after <= $1")
	q.purgeFamilies = purge("families", "purge_after <= $1")
	q.size = `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`
	return q
}

// expand replaces {s} in sql by the quoted schema.
func (q queries) expand(sql string) string { return strings.ReplaceAll(sql, "{s}", q.schema) }
