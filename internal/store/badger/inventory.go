package badger

import (
	"context"
	"errors"

	"github.com/mdmauth/mdmauth/internal/store"
)

var errTODO = errors.New("badger: not implemented yet")

// ScanEnrollments implements store.Inventory.
func (s *Store) ScanEnrollments(ctx context.Context, from string, fn func(*store.Enrollment) bool) error {
	return errTODO
}

// ScanTokens implements store.Inventory.
func (s *Store) ScanTokens(ctx context.Context, from []byte, fn func(*store.Token) bool) error {
	return errTODO
}

// ScanFamilies implements store.Inventory.
func (s *Store) ScanFamilies(ctx context.Context, from string, fn func(*store.Family) bool) error {
	return errTODO
}

// CountLoginStates implements store.Inventory.
func (s *Store) CountLoginStates(ctx context.Context) (int, error) { return 0, errTODO }

// TokensForUser implements store.Inventory.
func (s *Store) TokensForUser(ctx context.Context, iss, sub string) ([]*store.Token, error) {
	return nil, errTODO
}

// FamiliesForUser implements store.Inventory.
func (s *Store) FamiliesForUser(ctx context.Context, iss, sub string) ([]*store.Family, error) {
	return nil, errTODO
}

// Size implements store.Inventory.
func (s *Store) Size(ctx context.Context) (int64, error) { return -1, errTODO }
